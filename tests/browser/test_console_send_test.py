"""Sending a test e-mail from the console in Chromium and watching it arrive, page unreloaded.

The console and a worker run as processes (``mailworker console``, ``mailworker run``), the
profile points at a kit SMTP server with TLS and AUTH, whose CA the worker trusts through the
profile. The worker starts only once the follow page shows the message queued, so the page is
seen to change by itself. The form and the two outcomes are captured through the kit's
``screenshots`` fixture (tests/kit/console_browser.py).
"""

from __future__ import annotations

import asyncio
import time
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
from tests.kit.delivery import add_profile
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.processes import WorkerProcesses
from tests.kit.smtp_server import SmtpTestServer
from worker.settings import Settings
from worker.test_message import DEFAULT_SUBJECT, RECIPIENT_HINT

pytestmark = [needs_chromium, pytest.mark.timeout(120)]
sync_api = pytest.importorskip("playwright.sync_api")

PASSWORD = "Konsola-Haslo-2026!"
RECIPIENT = "odbiorca@example.com"
UNKNOWN = "nikt@example.com"
# Long enough for a worker process to start and send; the page itself polls every second.
ARRIVAL_MS = 30_000


@pytest.fixture
def console_url(
    cli_env: dict[str, str], settings: Settings, smtps_server: SmtpTestServer
) -> Iterator[str]:
    """The console as a process, an admin 'ewa', and the default profile 'test' sending through
    ``smtps_server`` (implicit TLS, AUTH), which refuses UNKNOWN with 550."""
    add_console_user(cli_env, "ewa", PASSWORD, "admin")
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    smtps_server.script.on("RCPT", reply="550 5.1.1 No such user here", rcpt=UNKNOWN)
    with console_process(cli_env) as url:
        yield url


def _queued_then_worker(page: sync_api.Page, workers: WorkerProcesses, queued: str) -> None:
    """The follow page shows the message queued; then a worker starts, and the page is marked
    so that a reload would show (a reload drops the mark)."""
    page.wait_for_url("**/send-test/*")
    sync_api.expect(page.get_by_role("status")).to_contain_text(queued)
    page.evaluate("window.notReloaded = true")
    workers.start("worker-a")


def test_an_admin_sends_a_test_e_mail_in_polish_and_sees_it_delivered_live(  # noqa: PLR0917 - pytest passes fixtures positionally
    browser: sync_api.Browser,
    console_url: str,
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    """The form by its Polish labels, a PDF attached; the follow page goes from "W kolejce" to
    "Dostarczono" with the server's reply by itself, and the server has the PDF."""
    invoice = tmp_path / "faktura testowa.pdf"
    invoice.write_bytes(minimal_pdf())
    errors: list[str] = []
    page = new_page(browser, "pl", errors)
    sign_in(page, console_url, "ewa", PASSWORD, "pl")

    page.get_by_role("link", name="Wyślij wiadomość testową").click()
    page.wait_for_url("**/send-test")
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text("Wyślij wiadomość testową")
    sync_api.expect(page.get_by_label("Konto", exact=True)).to_have_value("test")
    sync_api.expect(page.get_by_label("Temat")).to_have_value(DEFAULT_SUBJECT)
    page.get_by_label("Adresat").fill(RECIPIENT)
    page.get_by_label("Treść").fill("Próba z konsoli: zażółć gęślą jaźń.")
    page.get_by_label("Załącznik").set_input_files(invoice)
    page.screenshot(path=screenshots / "send-test-form-pl.png", full_page=True)
    page.get_by_role("button", name="Wyślij", exact=True).click()

    _queued_then_worker(page, workers, "W kolejce")
    status = page.get_by_role("status")
    sync_api.expect(status).to_contain_text("Dostarczono", timeout=ARRIVAL_MS)
    sync_api.expect(status).to_contain_text("Odpowiedź serwera")
    sync_api.expect(status).to_contain_text("250 ")
    page.screenshot(path=screenshots / "send-test-delivered-pl.png", full_page=True)

    assert page.evaluate("window.notReloaded") is True
    [received] = smtps_server.wait_for_messages(1)
    [attachment] = list(received.parsed().iter_attachments())
    assert ("faktura testowa.pdf", invoice.read_bytes()) == (
        attachment.get_filename(), attachment.get_content()
    )  # fmt: skip
    assert [] == errors, errors  # nothing refused by the CSP, no script errors


def test_a_refused_recipient_shows_the_reply_and_the_hint_in_english(
    browser: sync_api.Browser,
    console_url: str,
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
    screenshots: Path,
) -> None:
    """In English: the server refuses the recipient, and the page turns by itself to "Not
    delivered" with the server's 550 reply and the advice to check the address."""
    errors: list[str] = []
    page = new_page(browser, "en", errors)
    sign_in(page, console_url, "ewa", PASSWORD, "en")

    page.goto(f"{console_url}/send-test")
    page.get_by_label("Recipient").fill(UNKNOWN)
    page.get_by_label("Subject").fill("Connection check")
    page.get_by_role("button", name="Send", exact=True).click()

    _queued_then_worker(page, workers, "Queued")
    status = page.get_by_role("status")
    sync_api.expect(status).to_contain_text("Not delivered", timeout=ARRIVAL_MS)
    sync_api.expect(status).to_contain_text("550 5.1.1 No such user here")
    sync_api.expect(status).to_contain_text(RECIPIENT_HINT)
    page.screenshot(path=screenshots / "send-test-failed-en.png", full_page=True)

    assert page.evaluate("window.notReloaded") is True
    assert () == smtps_server.messages
    assert [] == errors, errors


def test_without_javascript_the_refresh_link_shows_the_state(
    browser: sync_api.Browser, console_url: str, workers: WorkerProcesses
) -> None:
    """With scripts off the form still sends, and Refresh shows the message delivered once a
    worker has sent it."""
    context = browser.new_context(
        java_script_enabled=False, extra_http_headers={"Accept-Language": "en"}
    )
    page = context.new_page()
    sign_in(page, console_url, "ewa", PASSWORD, "en")
    page.goto(f"{console_url}/send-test")
    page.get_by_label("Recipient").fill(RECIPIENT)
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url("**/send-test/*")
    sync_api.expect(page.get_by_role("status")).to_contain_text("Queued")
    workers.start("worker-a")

    deadline = time.monotonic() + ARRIVAL_MS / 1000
    while "Delivered" not in page.get_by_role("status").inner_text():
        assert time.monotonic() < deadline, page.get_by_role("status").inner_text()
        page.wait_for_timeout(200)
        page.get_by_role("link", name="Refresh").click()
        page.wait_for_load_state()

    sync_api.expect(page.get_by_role("status")).to_contain_text("Server's reply")
    context.close()
