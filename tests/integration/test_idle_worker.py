"""An idle worker with LISTEN connected does not poll; what it scheduled itself it still meets.

New rows wake a listening worker through NOTIFY, so between housekeepings it claims only
when something it knows of becomes due (its own retries, a pause's end, a cap's room).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.kit.delivery import add_profile, enqueue, fast_settings, row
from tests.kit.live_worker import http_get, parse_metrics, running_worker
from tests.kit.processes import wait_until
from tests.kit.smtp_fixtures import SmtpServerFactory
from worker.settings import Settings

LAST_CLAIM = ("mailworker_last_claim_timestamp_seconds", ())


async def _last_claim(port: int) -> float:
    _, _, body = await http_get(port, "/metrics")
    return parse_metrics(body)[LAST_CLAIM]


async def test_a_listening_idle_worker_does_not_poll_but_new_rows_wake_it(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """Poll interval 0.05 s, housekeeping every 30 s: in a second of idleness, no claim.

    Then a new row is delivered at once: NOTIFY, not the poll, wakes the worker.
    """
    settings = fast_settings(
        settings, poll_interval=0.05, housekeeping_interval=30, http_address="127.0.0.1:0"
    )
    server = smtp_server_factory(tls="none")
    await add_profile(settings, server, encryption="none", login=None, password=None)

    async def delivered() -> bool:
        return len(server.messages) == 1

    async with running_worker(settings) as worker:
        assert worker.http_port is not None
        await asyncio.sleep(0.3)  # the claims of the start are over
        before = await _last_claim(worker.http_port)
        await asyncio.sleep(1.0)  # twenty poll intervals
        after = await _last_claim(worker.http_port)
        await enqueue(settings)
        await wait_until(delivered, within=10, what="the new message at the server")

    assert before == after


async def test_a_retry_the_worker_scheduled_is_met_without_polling(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """451 once, retry after 0.05 s: sent at once though polls and housekeeping are 60 s apart."""
    settings = fast_settings(settings, poll_interval=60, housekeeping_interval=60)
    server = smtp_server_factory(tls="none")
    await add_profile(settings, server, encryption="none", login=None, password=None)
    server.script.once("DATA_END", reply="451 4.3.0 Temporary failure, try later")

    async def delivered() -> bool:
        return len(server.messages) == 1

    async with running_worker(settings):
        [message_id] = await enqueue(settings)
        await wait_until(delivered, within=10, what="the retried message at the server")

    stored = await row(settings, message_id)
    assert ("sent", 2) == (stored["status"], stored["attempts"])


async def test_a_new_row_due_later_is_sent_when_due_without_polling(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """not_before one second ahead: the NOTIFY finds nothing due yet but learns when."""
    settings = fast_settings(settings, poll_interval=60, housekeeping_interval=60)
    server = smtp_server_factory(tls="none")
    await add_profile(settings, server, encryption="none", login=None, password=None)

    async def delivered() -> bool:
        return len(server.messages) == 1

    async with running_worker(settings):
        [message_id] = await enqueue(settings, not_before=datetime.now(UTC) + timedelta(seconds=1))
        await wait_until(delivered, within=10, what="the scheduled message at the server")

    stored = await row(settings, message_id)
    assert stored["sent_at"] >= stored["not_before"]
