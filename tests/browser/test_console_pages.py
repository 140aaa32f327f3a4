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
    """``mailworker console`` as a process on a free port, with an admin 'ewa' and a profile."""
    add_console_user(cli_env, "ewa", PASSWORD, "admin")
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
    assert page.url.endswith("/login")
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
