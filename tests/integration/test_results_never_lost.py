"""A result is never lost, and never overwrites someone else's claim.

Real PostgreSQL, real SMTP servers; a "lost lease" or "another worker's claim" is made with
the same SQL a reclaim and a claim run, so each test can say exactly which state a late
result meets.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.kit.database import sql
from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.processes import wait_until
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.crypto import load_cipher
from worker.db import asyncpg_dsn
from worker.outcomes import Outcome
from worker.repository import Repository
from worker.results import ResultWriter
from worker.settings import Settings
from worker.worker import Worker

pytestmark = pytest.mark.timeout(90)


async def test_a_reply_the_database_cannot_store_is_stored_escaped(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A legacy server's 250 with a NUL and Latin-2 bytes: stored as escapes, nothing stalls.

    Before: PostgreSQL refused the text, the writer took that for an outage and retried
    forever; every later result waited behind it and the rows stayed ``sending``.
    """
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    smtps_server.script.once("DATA_END", reply="250 2.0.0 Przyj\xea\x00to \xb3adnie")
    first, second = await enqueue(settings, count=2)

    await run_until_empty(settings, limit=30)

    stored = await row(settings, first)
    assert ("sent", "250 2.0.0 Przyj\\xea\\x00to \\xb3adnie") == (
        stored["status"],
        stored["smtp_response"],
    )
    [attempt] = await attempts_of(settings, first)
    assert "2.0.0 Przyj\\xea\\x00to \\xb3adnie" == attempt["smtp_text"]
    assert "sent" == (await row(settings, second))["status"]


async def _claim(engine: AsyncEngine, worker: str) -> list[int]:
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        claimed = await Repository(connection).claim_due(
            worker=worker,
            lease_seconds=30,
            free_slots=10,
            per_connection=10,
            max_message_bytes=1_000_000,
        )
    return [message.id for message in claimed]


def _outcome(message_id: int, *, worker: str, **values: Any) -> Outcome:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "message_id": message_id,
        "profile": "test",
        "attempt_no": 1,
        "worker": worker,
        "started_at": now,
        "finished_at": now,
        "attempt_outcome": "sent",
        "status": "sent",
        "status_reason": "sent",
        "smtp_response": "250 OK",
        "sent_at": now,
        "force": True,
        "smtp_code": 250,
        "smtp_text": "OK",
        **values,
    }
    return Outcome(**fields)


@pytest.fixture
async def engine_of(settings: Settings) -> Any:
    assert settings.database_url is not None
    engine = create_async_engine(settings.database_url.get_secret_value())
    yield engine
    await engine.dispose()


async def test_a_result_the_database_refuses_is_written_alone_in_plain_text(
    settings: Settings, smtps_server: SmtpTestServer, engine_of: AsyncEngine
) -> None:
    """A batch with one result PostgreSQL refuses: the others are written as they are, that one
    with its texts in printable ASCII; the writer returns instead of retrying forever."""
    await add_profile(settings, smtps_server, encryption="ssl")
    ids = await enqueue(settings, count=3)
    assert ids == await _claim(engine_of, "w1")
    refused = _outcome(ids[1], worker="w1", smtp_text="OK\x00", smtp_response="250 OK\x00")
    batch = [_outcome(ids[0], worker="w1"), refused, _outcome(ids[2], worker="w1")]

    written = await asyncio.wait_for(ResultWriter(engine_of).write(batch), timeout=20)

    assert written is True
    rows = [await row(settings, message_id) for message_id in ids]
    assert ["sent"] * 3 == [stored["status"] for stored in rows]
    assert ["250 OK", "250 OK\\x00", "250 OK"] == [stored["smtp_response"] for stored in rows]


async def test_a_late_result_never_moves_a_row_another_worker_claimed(
    settings: Settings, smtps_server: SmtpTestServer, engine_of: AsyncEngine
) -> None:
    """w1's lease ran out and w2 claimed the row: w1's result is an attempt, the row stays w2's.

    Before: the result was matched on id and status only and overwrote w2's claim.
    """
    await add_profile(settings, smtps_server, encryption="ssl")
    [message_id] = await enqueue(settings)
    await _claim(engine_of, "w1")
    await sql(settings, "UPDATE mail.outbox SET lease_expires_at = now() - interval '1 second'")
    await sql(settings, "UPDATE mail.outbox SET status = 'pending', claimed_by = NULL")  # reclaim
    await _claim(engine_of, "w2")

    await ResultWriter(engine_of).write([_outcome(message_id, worker="w1")])

    stored = await row(settings, message_id)
    assert ("sending", "w2", 2) == (stored["status"], stored["claimed_by"], stored["attempts"])
    [late] = await attempts_of(settings, message_id)
    assert ("w1", "sent") == (late["worker_id"], late["outcome"])


async def test_a_delivery_whose_lease_ran_out_is_still_recorded(
    settings: Settings, smtps_server: SmtpTestServer, engine_of: AsyncEngine
) -> None:
    """Reclaimed but claimed by nobody since: w1's delivery makes it ``sent`` (no second send);
    a result that only reschedules leaves the reclaimed row alone."""
    await add_profile(settings, smtps_server, encryption="ssl")
    delivered, retried = await enqueue(settings, count=2)
    await _claim(engine_of, "w1")
    await sql(settings, "UPDATE mail.outbox SET status = 'pending', claimed_by = NULL")  # reclaim
    retry = _outcome(
        retried,
        worker="w1",
        attempt_outcome="retry",
        status="pending",
        status_reason="waiting to retry",
        sent_at=None,
        force=False,
        smtp_code=451,
    )

    await ResultWriter(engine_of).write([_outcome(delivered, worker="w1"), retry])

    assert "sent" == (await row(settings, delivered))["status"]
    untouched = await row(settings, retried)  # as the reclaim left it, the claim's reason too
    assert ("pending", "sending") == (untouched["status"], untouched["status_reason"])


async def test_a_restarted_worker_with_the_same_name_lets_its_old_rows_go(
    settings: Settings, smtps_server: SmtpTestServer, smtp_server_factory: SmtpServerFactory
) -> None:
    """A container restarted under the same worker name renews only the rows it holds.

    While its own message is in flight (held at the server), the row its previous run left
    ``sending`` is reclaimed once its lease runs out, and sent. Before: every ``sending`` row
    with the name was renewed while the worker had anything in flight, so it stayed
    ``sending`` as long as the worker was busy.
    """
    settings = fast_settings(settings, worker_name="web-1:1", lease_seconds=5.0)
    await add_profile(settings, smtps_server, encryption="ssl")
    [left_behind] = await enqueue(settings, subject="Z poprzedniego uruchomienia")
    await sql(
        settings,
        "UPDATE mail.outbox SET status = 'sending', attempts = 1, claimed_by = 'web-1:1',"
        " claimed_at = now(), lease_expires_at = now() + interval '2 seconds'",
    )
    # The worker's own message, held by a server of its own (a held server serves no one).
    slow = smtp_server_factory(tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD})
    await add_profile(settings, slow, name="wolny", encryption="ssl", timeout_seconds=60)
    held = _Held()
    slow.script.once("DATA_END", reply="250 never used", match=held)
    await enqueue(settings, profile="wolny", subject="Trzymana przez serwer")
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    engine = create_async_engine(url)
    worker = Worker(
        engine=engine, listen_dsn=asyncpg_dsn(url), settings=settings, cipher=load_cipher(settings)
    )
    running = asyncio.create_task(worker.run())
    try:
        assert await asyncio.to_thread(held.reached.wait, 20)

        async def sent() -> bool:
            return (await row(settings, left_behind))["status"] == "sent"

        await wait_until(sent, within=20, what="the old run's row sent while the worker is busy")
    finally:
        held.release.set()
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, timeout=15)
        await engine.dispose()
    assert (1, 1) == (len(smtps_server.messages), len(slow.messages))


class _Held:
    """Holds the server after a message's last byte until released (in the server's thread)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, _event: object) -> bool:
        self.reached.set()
        self.release.wait(60)
        return False  # then the usual 250


async def test_each_start_has_a_worker_name_of_its_own(settings: Settings) -> None:
    """Without MAILWORKER_WORKER_NAME, two starts in one process (same host, same PID) differ."""
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    engine = create_async_engine(url)
    try:
        names = [
            Worker(
                engine=engine,
                listen_dsn=asyncpg_dsn(url),
                settings=settings,
                cipher=load_cipher(settings),
            ).name
            for _ in range(2)
        ]
    finally:
        await engine.dispose()
    assert names[0] != names[1]
    assert names[0].rsplit(":", 1)[0] == names[1].rsplit(":", 1)[0]


async def test_after_a_failover_expired_leases_wait_one_lease(
    settings: Settings, smtps_server: SmtpTestServer, engine_of: AsyncEngine
) -> None:
    """A replica took over (another server start time in lease_clock): nothing is reclaimed
    until the workers had one lease to renew, though the new server has run for long.

    Before: the guard read pg_postmaster_start_time(), which a promoted replica does not reset.
    """
    await add_profile(settings, smtps_server, encryption="ssl")
    [message_id] = await enqueue(settings)
    await _claim(engine_of, "alive")
    await sql(settings, "UPDATE mail.outbox SET lease_expires_at = now() - interval '1 second'")
    # The clock row as replicated from the old primary: another server, seen up for long.
    await sql(
        settings,
        "UPDATE mail.lease_clock SET server_started = '2026-01-01', up_since = '2026-01-01'",
    )

    async def housekeeping() -> dict[str, int]:
        async with engine_of.begin() as connection:
            return await Repository(connection).housekeeping(max_attempts=8, lease_seconds=30)

    right_after = await housekeeping()
    [(up_for,)] = await sql(
        settings, "SELECT extract(epoch FROM now() - up_since) FROM mail.lease_clock"
    )
    await sql(settings, "UPDATE mail.lease_clock SET up_since = now() - interval '31 seconds'")
    a_lease_later = await housekeeping()

    assert (0, 1) == (right_after["reclaimed"], a_lease_later["reclaimed"])
    assert float(up_for) < 5
    assert "pending" == (await row(settings, message_id))["status"]
