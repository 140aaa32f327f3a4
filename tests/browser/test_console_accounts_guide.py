"""The guide's three accounts added through the console's account form in Chromium, each checked
with **Check connection** before it is saved: Poczta WP on 587 (STARTTLS), Onet on 465 (SSL)
and Gmail on 465 with an app password.

Each account starts from its provider preset and the guide's values; only the server's name
and port lead it to a kit server that answers as the provider does
(``tests/kit/provider_servers.py``). The console process trusts the kit's CA through
``SSL_CERT_FILE`` (the form has no CA field). Port 465 needs root; the fixture skips where it
cannot be bound (CI runs as root). The form and the checks' results are captured through the
kit's ``screenshots`` fixture (tests/kit/console_browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.console_browser import (
    add_console_user,
    console_process,
    needs_chromium,
    new_page,
    sign_in,
)
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.processes import WorkerProcesses
from tests.kit.provider_servers import (
    GMAIL,
    GMAIL_ACCOUNT_PASSWORD,
    ONET,
    WP,
    ProviderAccount,
    ProviderServers,
)
from tests.kit.smtp_server import SmtpTestCA, SmtpTestServer
from worker.presets import load_presets

ADMIN_PASSWORD = "Konsola-Haslo-2026!"

pytestmark = [needs_chromium, pytest.mark.timeout(120)]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

PRESETS = load_presets()
ARRIVAL_MS = 30_000  # long enough for a worker process to start and send


@pytest.fixture
def console_url(cli_env: dict[str, str], smtp_ca: SmtpTestCA) -> Iterator[str]:
    """The console as a process, trusting the kit's CA, with an admin 'ewa'."""
    add_console_user(cli_env, "ewa", ADMIN_PASSWORD, "admin")
    with console_process(cli_env, SSL_CERT_FILE=smtp_ca.cert_bundle) as url:
        yield url


def fill_account(
    page: Any,
    account: ProviderAccount,
    server: SmtpTestServer,
    *,
    name: str,
    encryption: str,
    password: str,
) -> None:
    """The form as the guide fills it in: the preset first, then the fields by their labels;
    only the server's name and port are the kit server's."""
    page.get_by_label("Dostawca poczty").select_option(account.preset)
    page.get_by_role("button", name="Zastosuj ustawienia dostawcy").click()
    page.wait_for_load_state()
    expect(page.get_by_label("Nazwa serwera")).to_have_value(PRESETS[account.preset].host)
    expect(page.locator("p.hint")).not_to_be_empty()  # the preset's hint, once it is chosen
    page.get_by_label("Nazwa konta").fill(name)
    page.get_by_label("Email wychodzący").fill(account.address)
    page.get_by_label("Nazwa serwera").fill(server.hostname)
    page.get_by_label("Port", exact=True).fill(str(server.port))
    page.get_by_label("Metoda szyfrowania").select_option(encryption)
    page.get_by_label("Metoda uwierzytelniania").select_option("login")
    page.get_by_label("Login", exact=True).fill(account.login)
    page.get_by_label("Hasło").fill(password)


def check_connection(page: Any) -> Any:
    """Click **Check connection**; the result's section once the page is back."""
    page.get_by_role("button", name="Sprawdź połączenie").click()
    page.wait_for_load_state()
    result = page.locator("section.connection-check")
    expect(result).to_be_visible()
    return result


def save(page: Any, password: str) -> None:
    """Type the password again (a check does not send it back) and save."""
    expect(page.get_by_label("Hasło")).to_have_value("")
    page.get_by_label("Hasło").fill(password)
    page.get_by_role("button", name="Zapisz").click()
    page.wait_for_url("**/accounts")


def add_checked_account(
    page: Any,
    console_url: str,
    account: ProviderAccount,
    server: SmtpTestServer,
    *,
    encryption: str,
    shots: Path,
    shot_of_form: str | None = None,
) -> Any:
    """Add ``account`` through the form: fill, check (it works), save; the check's section."""
    name = f"comarch-dms-{account.preset}"
    page.goto(f"{console_url}/accounts/new")
    fill_account(page, account, server, name=name, encryption=encryption,
                 password=account.typed_password)  # fmt: skip
    if shot_of_form is not None:
        page.screenshot(path=shots / shot_of_form, full_page=True)
    result = check_connection(page)
    expect(result).to_contain_text("Połączenie działa")
    expect(result).to_contain_text("Niczego nie zapisano")
    expect(result).to_contain_text(f"{account.login} (przyjęty)")
    expect(result.locator("dd").nth(1)).to_contain_text("TLSv1.")
    return result


def test_the_guides_three_accounts_are_checked_and_saved_through_the_form(  # noqa: PLR0917 - pytest passes fixtures positionally
    browser: Any,
    console_url: str,
    provider_servers: ProviderServers,
    screenshots: Path,
    workers: WorkerProcesses,
    smtp_ca: SmtpTestCA,
    tmp_path: Path,
) -> None:
    """WP on 587 with STARTTLS, Onet on 465 with SSL and Gmail on 465 with its app password
    (typed with Google's spaces) each pass **Check connection** and are saved; Gmail's normal
    password first gets Google's 534 reply and the advice to create an app password; each
    kit server saw one good login per check. A test e-mail with an attachment through the
    saved WP account is delivered. The English form checks a stored account with its stored
    password. Nothing is refused by the CSP, no script fails."""
    errors: list[str] = []
    page = new_page(browser, "pl", errors)
    sign_in(page, console_url, "ewa", ADMIN_PASSWORD, "pl")
    wp = provider_servers.wp(tls="starttls")
    onet = provider_servers.onet()
    gmail = provider_servers.gmail()

    add_checked_account(page, console_url, WP, wp, encryption="starttls", shots=screenshots,
                        shot_of_form="account-form-wp-pl.png")  # fmt: skip
    expect(page.locator("section.connection-check")).to_contain_text("po STARTTLS")
    page.screenshot(path=screenshots / "check-ok-pl.png", full_page=True)
    save(page, WP.typed_password)

    add_checked_account(page, console_url, ONET, onet, encryption="ssl", shots=screenshots)
    expect(page.locator("section.connection-check dd").first).to_contain_text(f":{onet.port}")
    save(page, ONET.typed_password)

    page.goto(f"{console_url}/accounts/new")
    fill_account(page, GMAIL, gmail, name="comarch-dms-gmail", encryption="ssl",
                 password=GMAIL_ACCOUNT_PASSWORD)  # fmt: skip
    refused = check_connection(page)
    expect(refused).to_contain_text("Połączenie nie działa")
    expect(refused).to_contain_text("logowanie")
    expect(refused).to_contain_text("534 5.7.9 Application-specific password required")
    # The gmail preset's advice: the code Google sent, and what to do (an app password).
    expect(refused.locator("dd.hint")).to_contain_text("534 5.7.9")
    page.screenshot(path=screenshots / "check-gmail-hint-pl.png", full_page=True)
    add_checked_account(page, console_url, GMAIL, gmail, encryption="ssl", shots=screenshots)
    save(page, GMAIL.typed_password)

    table = page.get_by_role("table")
    for shown in (WP.address, ONET.address, GMAIL.address, gmail.hostname, wp.hostname):
        expect(table).to_contain_text(shown)
    assert [True] == [attempt.success for attempt in wp.auth_attempts]
    assert [True] == [attempt.success for attempt in onet.auth_attempts]
    assert [False, True] == [attempt.success for attempt in gmail.auth_attempts]
    assert () == wp.messages + onet.messages + gmail.messages

    # The WP account, the first saved and so the default, sends the guide's test e-mail.
    invoice = tmp_path / "faktura.pdf"
    invoice.write_bytes(minimal_pdf())
    workers.start("worker-a", env={"SSL_CERT_FILE": smtp_ca.cert_bundle})
    page.get_by_role("link", name="Wyślij wiadomość testową").click()
    page.wait_for_url("**/send-test")
    expect(page.get_by_label("Konto", exact=True)).to_have_value("comarch-dms-wp")
    page.get_by_label("Adresat").fill("odbiorca@example.com")
    page.get_by_label("Załącznik").set_input_files(invoice)
    page.get_by_role("button", name="Wyślij", exact=True).click()
    page.wait_for_url("**/send-test/*")
    expect(page.get_by_role("status")).to_contain_text("Dostarczono", timeout=ARRIVAL_MS)
    [received] = wp.wait_for_messages(1)
    [attachment] = list(received.parsed().iter_attachments())
    assert ("faktura.pdf", invoice.read_bytes()) == (
        attachment.get_filename(), attachment.get_content()
    )  # fmt: skip

    page.get_by_label("Język").select_option("en")
    page.get_by_role("button", name="Zmień język").click()
    page.wait_for_load_state()
    page.goto(f"{console_url}/accounts/comarch-dms-wp/edit")
    page.get_by_role("button", name="Check connection").click()
    page.wait_for_load_state()
    result = page.locator("section.connection-check")
    expect(result).to_contain_text("Connection works")
    expect(result).to_contain_text(f"{WP.login} (accepted)")
    expect(page.get_by_label("Password")).to_have_value("")
    # Each check logged in once, and so did the worker that sent the test e-mail.
    assert [True, True, True] == [attempt.success for attempt in wp.auth_attempts]

    assert [] == errors, errors
