"""Signing in to the console lands on the overview, read in Chromium in Polish and English.

Both pages are captured through the kit's ``screenshots`` fixture (tests/kit/console_browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.kit.console_browser import (
    add_console_user,
    console_process,
    needs_chromium,
    new_page,
    sign_in,
)
from tests.kit.rows import ago, insert_message, insert_profile

PASSWORD = "Konsola-Haslo-2026!"
REPLY = "550 5.1.1 <anna.nowak@example.pl>: Recipient address rejected"
REFUSED = f"failed: {REPLY}"  # as the worker stores it; the Polish page says our words in Polish

pytestmark = needs_chromium
sync_api = pytest.importorskip("playwright.sync_api")


def _scene(database_url: str) -> None:
    """A capped default account with a backlog and a failure, and a paused one."""
    insert_profile(database_url, "biuro", is_default=True, daily_cap=300)
    insert_message(database_url, profile="biuro", created_at=ago(minutes=12))
    insert_message(database_url, profile="biuro", status="sent", sent_at=ago(hours=2))
    insert_message(database_url, profile="biuro", status="failed", status_reason=REFUSED)
    insert_profile(database_url, "sklep", paused_until=datetime(2299, 1, 1, tzinfo=UTC),
                   pause_reason="535 5.7.8 Error: authentication failed")  # fmt: skip
    insert_message(database_url, profile="sklep")


@pytest.fixture
def console_url(cli_env: dict[str, str], database_url: str) -> Iterator[str]:
    """``mailworker console`` as a process on a free port, with an admin 'ewa' and a scene."""
    add_console_user(cli_env, "ewa", PASSWORD, "admin")
    _scene(database_url)
    with console_process(cli_env) as url:
        yield url


def test_signing_in_lands_on_the_overview_in_polish_and_english(
    browser: sync_api.Browser, console_url: str, screenshots: Path
) -> None:
    """A person signs in and lands on the overview in their browser's Polish: the counts, the
    backlog, the caps, the paused account and the failure; switched to English, the same."""
    errors: list[str] = []
    page = new_page(browser, "pl", errors)
    sign_in(page, console_url, "ewa", PASSWORD, "pl")
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text("Przegląd")
    counts = page.get_by_role("region", name="Wiadomości według stanu").get_by_role("table")
    sync_api.expect(counts.get_by_role("row", name="Czekające na wysłanie")).to_contain_text("2")
    sync_api.expect(counts.get_by_role("row", name="Nieudane w ostatnich 24 h")).to_contain_text(
        "1"
    )
    main = page.get_by_role("main")
    for words in (
        "Do wysłania teraz: 1, najstarsza czeka 12 min",
        "Czekające na wstrzymane lub wyłączone konto: 1",
        "1 z 300 wiadomości w 24 h",
        "wstrzymane do 2299-01-01T00:00:00Z: 535 5.7.8 Error: authentication failed",
        f"niewysłana: {REPLY}",
    ):
        sync_api.expect(main).to_contain_text(words)
    page.screenshot(path=screenshots / "overview-pl.png", full_page=True)

    page.get_by_label("Język").select_option("en")
    page.get_by_role("button", name="Zmień język").click()
    page.wait_for_load_state()
    sync_api.expect(page.locator("html")).to_have_attribute("lang", "en")
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    for words in ("Due now: 1, oldest waiting 12 min", "1 of 300 messages in 24 h"):
        sync_api.expect(main).to_contain_text(words)
    page.get_by_role("link", name="All failed messages").wait_for()
    page.screenshot(path=screenshots / "overview-en.png", full_page=True)

    assert [] == errors  # nothing refused by the CSP, no script errors
