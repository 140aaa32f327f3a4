"""Signing in to the console lands on the overview, read in Chromium in Polish and English.

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
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.kit.commands import ok
from tests.kit.processes import REPO_ROOT
from tests.kit.rows import ago, insert_message, insert_profile

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "Konsola-Haslo-2026!"
REPLY = "550 5.1.1 <anna.nowak@example.pl>: Recipient address rejected"
REFUSED = f"failed: {REPLY}"  # as the worker stores it; the Polish page says our words in Polish

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install chromium (.ci/run does)"
)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
    ok(cli_env, "console", "users", "add", "ewa", "--role", "admin", "--password-stdin",
       input=f"{PASSWORD}\n")  # fmt: skip
    _scene(database_url)
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


def test_signing_in_lands_on_the_overview_in_polish_and_english(
    browser: sync_api.Browser, console_url: str, tmp_path: Path
) -> None:
    """A person signs in and lands on the overview in their browser's Polish: the counts, the
    backlog, the caps, the paused account and the failure; switched to English, the same."""
    shots = tmp_path / "screenshots"
    page = browser.new_page(locale="pl-PL", extra_http_headers={"Accept-Language": "pl-PL,pl"})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))

    page.goto(f"{console_url}/login")
    page.get_by_label("Nazwa użytkownika").fill("ewa")
    page.get_by_label("Hasło").fill(PASSWORD)
    page.get_by_role("button", name="Zaloguj").click()

    page.wait_for_url("**/overview")
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
    page.screenshot(path=shots / "overview-pl.png", full_page=True)

    page.get_by_label("Język").select_option("en")
    page.get_by_role("button", name="Zmień język").click()
    page.wait_for_load_state()
    sync_api.expect(page.locator("html")).to_have_attribute("lang", "en")
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    for words in ("Due now: 1, oldest waiting 12 min", "1 of 300 messages in 24 h"):
        sync_api.expect(main).to_contain_text(words)
    page.get_by_role("link", name="All failed messages").wait_for()
    page.screenshot(path=shots / "overview-en.png", full_page=True)

    assert [] == errors  # nothing refused by the CSP, no script errors
    print("screenshots:", *sorted(str(path) for path in shots.iterdir()))
