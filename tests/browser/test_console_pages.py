"""Signing in to the console and reading the accounts page in Chromium, in Polish and English.

Screenshots are saved under the test's temporary folder (``<tmp_path>/screenshots/``, kept by
pytest for the last three runs under its basetemp) and their paths printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.commands import ok
from tests.kit.processes import REPO_ROOT
from tests.kit.rows import insert_profile

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "Konsola-Haslo-2026!"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install chromium (.ci/run does)"
)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def console_url(cli_env: dict[str, str], database_url: str) -> Iterator[str]:
    """``mailworker console`` as a process on a free port, with an admin 'ewa' and a profile."""
    ok(cli_env, "console", "users", "add", "ewa", "--role", "admin", "--password-stdin",
       input=f"{PASSWORD}\n")  # fmt: skip
    insert_profile(database_url, "biuro", is_default=True, daily_cap=300)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "console", "--listen", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT,
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the console did not start listening"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def browser(console_url: str) -> Iterator[sync_api.Browser]:
    """Chromium, started after the console and its database and closed before them: Playwright's
    event loop runs in this thread meanwhile, so no ``asyncio.run`` may (the fixtures' SQL)."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def test_sign_in_and_read_the_accounts_in_polish_and_english(
    browser: sync_api.Browser, console_url: str, tmp_path: Path
) -> None:
    """A person signs in by the labelled fields, sees the accounts in Polish (their browser's
    language), switches to English and sees them again; every page is captured."""
    shots = tmp_path / "screenshots"
    page = browser.new_page(locale="pl-PL", extra_http_headers={"Accept-Language": "pl-PL,pl"})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))

    page.goto(f"{console_url}/accounts")
    assert page.url.endswith("/login")
    page.screenshot(path=shots / "login-pl.png", full_page=True)
    page.get_by_label("Nazwa użytkownika").fill("ewa")
    page.get_by_label("Hasło").fill(PASSWORD)
    page.get_by_role("button", name="Zaloguj").click()

    page.wait_for_url("**/overview")
    page.get_by_role("link", name="Konta").click()
    page.wait_for_url("**/accounts")
    table = page.get_by_role("table")
    for words in ("Nazwa konta", "Email wychodzący", "Nazwa serwera", "biuro@firma.pl",
                  "aktywne", "0 z 300 wiadomości w 24 h"):  # fmt: skip
        sync_api.expect(table).to_contain_text(words)
    page.screenshot(path=shots / "accounts-pl.png", full_page=True)

    page.get_by_label("Język").select_option("en")
    page.get_by_role("button", name="Zmień język").click()
    page.wait_for_load_state()
    sync_api.expect(page.locator("html")).to_have_attribute("lang", "en")
    sync_api.expect(page.get_by_role("table")).to_contain_text("Outgoing e-mail")
    page.screenshot(path=shots / "accounts-en.png", full_page=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    sync_api.expect(page.get_by_label("User name")).to_be_visible()
    page.screenshot(path=shots / "login-en.png", full_page=True)

    assert [] == errors  # nothing refused by the CSP, no script errors
    print("screenshots:", *sorted(str(path) for path in shots.iterdir()))


def test_an_admin_adds_an_account_by_the_labelled_fields_in_polish(
    browser: sync_api.Browser, console_url: str, tmp_path: Path
) -> None:
    """An admin opens the account form from the Accounts page, applies the WP preset, fills
    the fields by their Polish labels, saves with Enter, and sees the new account in the list."""
    shots = tmp_path / "screenshots"
    page = browser.new_page(locale="pl-PL", extra_http_headers={"Accept-Language": "pl-PL,pl"})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))
    page.goto(f"{console_url}/login")
    page.get_by_label("Nazwa użytkownika").fill("ewa")
    page.get_by_label("Hasło").fill(PASSWORD)
    page.get_by_role("button", name="Zaloguj").click()
    page.wait_for_url("**/overview")
    page.get_by_role("link", name="Konta").click()
    page.wait_for_url("**/accounts")

    page.get_by_role("link", name="Dodaj konto").click()
    page.wait_for_url("**/accounts/new")
    page.get_by_label("Dostawca poczty").select_option("wp")
    page.get_by_role("button", name="Zastosuj ustawienia dostawcy").click()
    page.wait_for_load_state()
    sync_api.expect(page.get_by_label("Nazwa serwera")).to_have_value("smtp.wp.pl")
    sync_api.expect(page.get_by_label("Port")).to_have_value("465")
    page.get_by_label("Nazwa konta").fill("wp")
    page.get_by_label("Email wychodzący").fill("jankowalski@wp.pl")
    page.get_by_label("Nazwa wyświetlana").fill("Jan Kowalski")
    page.get_by_label("Opis").fill("Faktury")
    sync_api.expect(page.get_by_label("Włącz wysyłanie")).to_be_checked()
    sync_api.expect(page.get_by_label("Typ serwera")).to_have_value("SMTP")
    sync_api.expect(page.get_by_label("Metoda szyfrowania")).to_have_value("ssl")
    page.get_by_label("Metoda uwierzytelniania").select_option("login")
    page.get_by_label("Hasło").fill("Wp-Tajne-Haslo-2026")
    page.screenshot(path=shots / "account-form-pl.png", full_page=True)
    page.get_by_label("Hasło").press("Enter")  # Enter saves; it does not re-apply the preset

    page.wait_for_url("**/accounts")
    table = page.get_by_role("table")
    sync_api.expect(table).to_contain_text("jankowalski@wp.pl")
    sync_api.expect(table).to_contain_text("smtp.wp.pl")
    page.screenshot(path=shots / "accounts-after-add-pl.png", full_page=True)
    assert [] == errors, errors
    print("screenshots:", *sorted(str(path) for path in shots.iterdir()))
