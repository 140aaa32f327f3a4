"""The queue pages in Chromium: an admin filters, opens a failed message, retries it and
cancels a pending one, each after its confirmation page; a viewer only reads.

The console runs as ``mailworker console``; the queue, a message and the confirmation are
captured through the kit's ``screenshots`` fixture (tests/kit/console_browser.py).
"""

from __future__ import annotations

import re
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
from tests.kit.rows import ago, insert_attempt, insert_message, insert_profile

ADMIN_PASSWORD = "Konsola-Kolejka-2026!"
VIEWER_PASSWORD = "Konsola-Podglad-2026!"

pytestmark = needs_chromium
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def messages(database_url: str) -> dict[str, int]:
    """Two accounts and their messages: failed, pending and sent, one failed with attempts."""
    insert_profile(database_url, "biuro", is_default=True)
    insert_profile(database_url, "sklep")
    shop_failed = insert_message(database_url, profile="sklep", status="failed", attempts=1,
                                 to_addrs=["ola@sklep.pl"], subject="Zamówienie 17",
                                 status_reason="550 5.1.1 mailbox unavailable")  # fmt: skip
    insert_attempt(database_url, shop_failed, outcome="failed", smtp_code=550,
                   smtp_text="5.1.1 mailbox unavailable", profile="sklep",
                   recipients={"ola@sklep.pl": {"code": 550, "text": "no such user"}})  # fmt: skip
    return {
        "shop_failed": shop_failed,
        "office_failed": insert_message(
            database_url, profile="biuro", status="failed", status_reason="554 rejected"
        ),
        "shop_pending": insert_message(database_url, profile="sklep", subject="Zamówienie 18"),
        "office_sent": insert_message(
            database_url,
            profile="biuro",
            status="sent",
            sent_at=ago(minutes=5),
            status_reason="sent",
        ),
    }


@pytest.fixture
def console_url(cli_env: dict[str, str], messages: dict[str, int]) -> Iterator[str]:
    """``mailworker console`` as a process on a free port, with an admin 'ewa' and a viewer
    'jan'."""
    add_console_user(cli_env, "ewa", ADMIN_PASSWORD, "admin")
    add_console_user(cli_env, "jan", VIEWER_PASSWORD, "viewer")
    with console_process(cli_env) as url:
        yield url


def _signed_in(
    browser: sync_api.Browser, console_url: str, name: str, password: str, errors: list[str]
) -> sync_api.Page:
    """A new English page, signed in as ``name`` by the labelled fields, on the queue."""
    page = new_page(browser, "en", errors)
    sign_in(page, console_url, name, password, "en")
    page.get_by_role("link", name="Queue").click()
    page.wait_for_url("**/queue")
    return page


def _listed(page: sync_api.Page) -> list[str]:
    """The message links of the queue's table, in order: ``#12``, ..."""
    return page.get_by_role("table").get_by_role("rowheader").all_inner_texts()


def test_an_admin_filters_retries_and_cancels_after_confirming(
    browser: sync_api.Browser, console_url: str, messages: dict[str, int], screenshots: Path
) -> None:
    """Filtered by status and account (labelled fields, Enter to apply), the queue lists the
    shop's failed message; its page shows the attempt; Retry asks first and then makes it
    pending. A pending message is cancelled the same way. The Polish queue says the words."""
    errors: list[str] = []
    page = _signed_in(browser, console_url, "ewa", ADMIN_PASSWORD, errors)
    failed, pending = messages["shop_failed"], messages["shop_pending"]
    assert 4 == len(_listed(page))
    page.screenshot(path=screenshots / "queue-en.png", full_page=True)

    page.get_by_label("Status").select_option("failed")
    page.get_by_label("Account", exact=True).fill("sklep")
    page.get_by_label("Account", exact=True).press("Enter")
    page.wait_for_url(re.compile(r"/queue\?status=failed&profile=sklep"))
    assert [f"#{failed}"] == _listed(page)
    sync_api.expect(page.get_by_role("table")).to_contain_text("failed")
    retry_all = page.get_by_role("link", name="Retry all failed messages of account sklep")
    sync_api.expect(retry_all).to_be_visible()

    page.get_by_role("link", name=f"#{failed}").click()
    page.wait_for_url(f"**/queue/{failed}")
    sync_api.expect(page.locator("dl.message")).to_contain_text("failed")
    sync_api.expect(page.locator("table.attempts")).to_contain_text("ola@sklep.pl: 550")
    page.screenshot(path=screenshots / "message-en.png", full_page=True)

    page.get_by_role("link", name="Retry", exact=True).click()
    page.wait_for_url(f"**/queue/{failed}/retry")
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text(f"Retry message {failed}?")
    page.screenshot(path=screenshots / "confirm-retry-en.png", full_page=True)
    page.get_by_role("button", name="Yes, retry the message").click()
    page.wait_for_url(f"**/queue/{failed}")
    sync_api.expect(page.get_by_role("status")).to_contain_text("Messages queued again: 1.")
    sync_api.expect(page.locator("dl.message")).to_contain_text("pending")

    page.goto(f"{console_url}/queue/{pending}")
    page.get_by_role("link", name="Cancel the message").click()
    page.wait_for_url(f"**/queue/{pending}/cancel")
    page.get_by_role("button", name="Yes, cancel the message").click()
    page.wait_for_url(f"**/queue/{pending}")
    sync_api.expect(page.get_by_role("status")).to_contain_text("Messages cancelled: 1.")
    sync_api.expect(page.locator("dl.message")).to_contain_text("cancelled")

    page.goto(f"{console_url}/queue")
    page.get_by_label("Language").select_option("pl")
    page.get_by_role("button", name="Change language").click()
    page.wait_for_load_state()
    sync_api.expect(page.locator("html")).to_have_attribute("lang", "pl")
    table = page.get_by_role("table")
    for words in ("Stan", "Konto", "oczekująca", "anulowana", "nieudana", "wysłana"):
        sync_api.expect(table).to_contain_text(words)
    sync_api.expect(page.get_by_label("Dodane od")).to_be_visible()
    page.screenshot(path=screenshots / "queue-pl.png", full_page=True)

    assert [] == errors, errors  # nothing refused by the CSP, no script errors


def test_a_viewer_reads_the_queue_without_retry_or_cancel(
    browser: sync_api.Browser, console_url: str, messages: dict[str, int]
) -> None:
    """A viewer sees every message and a failed one's page, but no button to change them."""
    errors: list[str] = []
    page = _signed_in(browser, console_url, "jan", VIEWER_PASSWORD, errors)

    page.goto(f"{console_url}/queue?profile=sklep")
    assert 2 == len(_listed(page))
    sync_api.expect(page.get_by_role("link", name="Retry all failed messages")).to_have_count(0)
    for message in ("shop_failed", "shop_pending"):
        page.goto(f"{console_url}/queue/{messages[message]}")
        sync_api.expect(page.get_by_role("heading", level=1)).to_contain_text("Message")
        sync_api.expect(page.get_by_role("link", name="Retry", exact=True)).to_have_count(0)
        sync_api.expect(page.get_by_role("link", name="Cancel the message")).to_have_count(0)

    assert [] == errors, errors
