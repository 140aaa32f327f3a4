"""The queue pages in Chromium: an admin filters, opens a failed message, retries it and
cancels a pending one, each after its confirmation page; a viewer only reads.

Screenshots are saved under the test's temporary folder (``<tmp_path>/screenshots/``) and
their paths printed. The console runs as ``mailworker console``, as in test_console_pages.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.commands import ok
from tests.kit.processes import REPO_ROOT
from tests.kit.rows import ago, insert_attempt, insert_message, insert_profile

CHROMIUM = Path("/usr/bin/chromium")
ADMIN_PASSWORD = "Konsola-Kolejka-2026!"
VIEWER_PASSWORD = "Konsola-Podglad-2026!"

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
    for name, role, password in (("ewa", "admin", ADMIN_PASSWORD),
                                 ("jan", "viewer", VIEWER_PASSWORD)):  # fmt: skip
        ok(cli_env, "console", "users", "add", name, "--role", role, "--password-stdin",
           input=f"{password}\n")  # fmt: skip
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
    """Chromium, started after the console and its database and closed before them."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def _signed_in(
    browser: sync_api.Browser, console_url: str, name: str, password: str, errors: list[str]
) -> sync_api.Page:
    """A new English page, signed in as ``name`` by the labelled fields, on the queue."""
    page = browser.new_page(locale="en-GB", extra_http_headers={"Accept-Language": "en-GB,en"})
    page.on("console", lambda message: errors.append(message.text))
    page.goto(f"{console_url}/queue")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/overview")  # signing in leads to the overview
    page.get_by_role("link", name="Queue").click()
    page.wait_for_url("**/queue")
    return page


def _listed(page: sync_api.Page) -> list[str]:
    """The message links of the queue's table, in order: ``#12``, ..."""
    return page.get_by_role("table").get_by_role("rowheader").all_inner_texts()


def test_an_admin_filters_retries_and_cancels_after_confirming(
    browser: sync_api.Browser, console_url: str, messages: dict[str, int], tmp_path: Path
) -> None:
    """Filtered by status and account (labelled fields, Enter to apply), the queue lists the
    shop's failed message; its page shows the attempt; Retry asks first and then makes it
    pending. A pending message is cancelled the same way. The Polish queue says the words."""
    shots = tmp_path / "screenshots"
    errors: list[str] = []
    page = _signed_in(browser, console_url, "ewa", ADMIN_PASSWORD, errors)
    failed, pending = messages["shop_failed"], messages["shop_pending"]
    assert 4 == len(_listed(page))
    page.screenshot(path=shots / "queue-en.png", full_page=True)

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
    page.screenshot(path=shots / "message-en.png", full_page=True)

    page.get_by_role("link", name="Retry", exact=True).click()
    page.wait_for_url(f"**/queue/{failed}/retry")
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text(f"Retry message {failed}?")
    page.screenshot(path=shots / "confirm-retry-en.png", full_page=True)
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
    page.screenshot(path=shots / "queue-pl.png", full_page=True)

    assert [] == errors, errors  # nothing refused by the CSP, no script errors
    print("screenshots:", *sorted(str(path) for path in shots.iterdir()))


def test_a_viewer_reads_the_queue_without_retry_or_cancel(
    browser: sync_api.Browser, console_url: str, messages: dict[str, int], tmp_path: Path
) -> None:
    """A viewer sees every message and a failed one's page, but no button to change them."""
    shots = tmp_path / "screenshots"
    errors: list[str] = []
    page = _signed_in(browser, console_url, "jan", VIEWER_PASSWORD, errors)

    page.goto(f"{console_url}/queue?profile=sklep")
    assert 2 == len(_listed(page))
    sync_api.expect(page.get_by_role("link", name="Retry all failed messages")).to_have_count(0)
    page.screenshot(path=shots / "queue-viewer-en.png", full_page=True)
    for message in ("shop_failed", "shop_pending"):
        page.goto(f"{console_url}/queue/{messages[message]}")
        sync_api.expect(page.get_by_role("heading", level=1)).to_contain_text("Message")
        sync_api.expect(page.get_by_role("link", name="Retry", exact=True)).to_have_count(0)
        sync_api.expect(page.get_by_role("link", name="Cancel the message")).to_have_count(0)
    page.screenshot(path=shots / "message-viewer-en.png", full_page=True)

    assert [] == errors, errors
