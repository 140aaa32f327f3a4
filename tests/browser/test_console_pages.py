"""Signing in to the console and reading the accounts page in Chromium, in Polish and English.

The pages that docs/console.md shows are captured through the kit's ``screenshots`` fixture
(tests/kit/console_browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.console_browser import (
    add_console_user,
    console_process,
    needs_chromium,
    new_page,
    sign_in,
)
from tests.kit.rows import insert_profile

PASSWORD = "Konsola-Haslo-2026!"

pytestmark = needs_chromium
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def console_url(cli_env: dict[str, str], database_url: str) -> Iterator[str]:
    """``mailworker console`` as a process on a free port, with an admin 'ewa', a viewer 'jan'
    and a profile."""
    add_console_user(cli_env, "ewa", PASSWORD, "admin")
    add_console_user(cli_env, "jan", PASSWORD, "viewer")
    insert_profile(database_url, "biuro", is_default=True, daily_cap=300)
    with console_process(cli_env) as url:
        yield url


def test_sign_in_and_read_the_accounts_in_polish_and_english(
    browser: sync_api.Browser, console_url: str, screenshots: Path
) -> None:
    """A person signs in by the labelled fields, sees the accounts in Polish (their browser's
    language), switches to English and sees them again; the pages are captured."""
    errors: list[str] = []
    page = new_page(browser, "pl", errors)

    page.goto(f"{console_url}/accounts")
    assert page.url.endswith("/login?next=%2Faccounts")
    sync_api.expect(page.get_by_label("Nazwa użytkownika")).to_be_visible()
    sign_in(page, console_url, "ewa", PASSWORD, "pl")
    page.get_by_role("link", name="Konta").click()
    page.wait_for_url("**/accounts")
    table = page.get_by_role("table")
    for words in ("Nazwa konta", "Email wychodzący", "Nazwa serwera", "biuro@firma.pl",
                  "aktywne", "0 z 300 wiadomości w 24 h"):  # fmt: skip
        sync_api.expect(table).to_contain_text(words)
    page.screenshot(path=screenshots / "accounts-pl.png", full_page=True)

    page.get_by_label("Język").select_option("en")
    page.get_by_role("button", name="Zmień język").click()
    page.wait_for_load_state()
    sync_api.expect(page.locator("html")).to_have_attribute("lang", "en")
    sync_api.expect(page.get_by_role("table")).to_contain_text("Outgoing e-mail")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    sync_api.expect(page.get_by_label("User name")).to_be_visible()
    page.screenshot(path=screenshots / "login-en.png", full_page=True)

    assert [] == errors  # nothing refused by the CSP, no script errors


def test_an_admin_adds_an_account_by_the_labelled_fields_in_polish(
    browser: sync_api.Browser, console_url: str
) -> None:
    """An admin opens the account form from the Accounts page, applies the WP preset, fills
    the fields by their Polish labels, saves with Enter, and sees the new account in the list."""
    errors: list[str] = []
    page = new_page(browser, "pl", errors)
    sign_in(page, console_url, "ewa", PASSWORD, "pl")
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
    page.get_by_label("Hasło").press("Enter")  # Enter saves; it does not re-apply the preset

    page.wait_for_url("**/accounts")
    table = page.get_by_role("table")
    sync_api.expect(table).to_contain_text("jankowalski@wp.pl")
    sync_api.expect(table).to_contain_text("smtp.wp.pl")
    assert [] == errors, errors


def _focused(page: sync_api.Page) -> str:
    """The accessible text of the element that has the keyboard's focus."""
    text: str = page.evaluate(
        "() => { const e = document.activeElement;"
        " return (e.labels && e.labels[0] ? e.labels[0].textContent : e.textContent).trim(); }"
    )
    return text


def _tab_to(page: sync_api.Page, text: str, most: int = 40) -> None:
    """Press Tab until the focus is on the control or link that reads ``text``."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if _focused(page) == text:
            return
    raise AssertionError(f"Tab never reached {text!r}")


def test_a_person_signs_in_and_opens_the_queue_with_the_keyboard_alone(
    browser: sync_api.Browser, console_url: str
) -> None:
    """No mouse: Tab to the fields, type, Enter signs in; Tab to the Queue link, Enter opens
    it; Tab to the status filter, choose with the arrow keys, Enter filters."""
    errors: list[str] = []
    page = new_page(browser, "en", errors)
    page.goto(f"{console_url}/login")
    _tab_to(page, "User name")
    page.keyboard.type("ewa")
    _tab_to(page, "Password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/overview")

    _tab_to(page, "Queue")
    page.keyboard.press("Enter")
    page.wait_for_url("**/queue")
    _tab_to(page, "Account")
    page.keyboard.type("biuro")
    page.keyboard.press("Enter")
    page.wait_for_url("**/queue?*profile=biuro*")
    sync_api.expect(page.get_by_label("Account")).to_have_value("biuro")
    assert [] == errors, errors


def test_a_viewer_has_no_form_and_no_test_send(browser: sync_api.Browser, console_url: str) -> None:
    """A viewer's pages offer neither Add account, Edit nor Send test e-mail, and opening
    their addresses says in words that only an administrator may."""
    errors: list[str] = []
    page = new_page(browser, "pl", errors)
    sign_in(page, console_url, "jan", PASSWORD, "pl")

    navigation = page.get_by_role("navigation", name="Strony")
    sync_api.expect(navigation.get_by_role("link", name="Kolejka")).to_be_visible()
    sync_api.expect(navigation.get_by_role("link", name="Wyślij wiadomość testową")).to_have_count(
        0
    )
    page.get_by_role("link", name="Konta").click()
    page.wait_for_url("**/accounts")
    sync_api.expect(page.get_by_role("link", name="Dodaj konto")).to_have_count(0)
    sync_api.expect(page.get_by_role("link", name="Edytuj")).to_have_count(0)
    for address in ("/accounts/new", "/accounts/biuro/edit", "/send-test"):
        answer = page.goto(f"{console_url}{address}")
        assert answer is not None
        assert 403 == answer.status
        sync_api.expect(page.get_by_role("alert")).to_have_text(
            "Tylko administrator może to zrobić."
        )
    assert [] == [error for error in errors if "403" not in error], errors
