"""``mailworker run`` as real processes: concurrent workers, kill -9, SIGTERM, database restarts.

Each test starts the CLI with ``python -m worker run`` against a real PostgreSQL and a real
SMTP test server, and watches the database and the server with short polls under deadlines.
The ``workers`` fixture kills any worker process still running when a test ends.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from chaos.postgres import PrivatePostgres
from tests.kit.delivery import add_profile
from tests.kit.processes import (
    Probe,
    WorkerProcesses,
    enqueue_numbered,
    received_message_ids,
    wait_until,
)
from tests.kit.smtp_server import Event, SmtpTestServer
from worker.repository import Repository
from worker.settings import Settings

pytestmark = pytest.mark.timeout(90)


class SlowData:
    """A ``match=`` for DATA_END rules: holds each final reply ``seconds``, never a fault.

    It returns False, so the server then accepts the message normally; meanwhile it records
    the recipients of the message in progress. It sleeps in the server's thread, so the whole
    server is slow: sends are serialised, which is what these tests want.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.in_progress: tuple[str, ...] | None = None  # the recipients of the held message
        self.finished: dict[str, float] = {}  # recipient: when its hold ended (monotonic)

    def install(self, server: SmtpTestServer) -> SlowData:
        # The reply is never sent: the rule's match always says no.
        server.script.on("DATA_END", reply="250 never used", match=self)
        return self

    def __call__(self, event: Event) -> bool:
        self.in_progress = event.rcpt_tos
        time.sleep(self.seconds)
        self.in_progress = None
        self.finished.update(dict.fromkeys(event.rcpt_tos, time.monotonic()))
        return False


def _message_ids_of(rows: dict[int, Any]) -> set[str]:
    return {row.message_id for row in rows.values()}


async def test_two_workers_deliver_each_message_exactly_once(
    settings: Settings,
    database_url: str,
    plain_server: SmtpTestServer,
    workers: WorkerProcesses,
    probe: Probe,
) -> None:
    """Two worker processes on one queue of 500: every message arrives exactly once.

    The server gets 500 messages whose Message-IDs are unique and are those of the rows; every
    row is 'sent' after one attempt; both workers took part (else the test proves nothing).
    """
    await add_profile(
        settings, plain_server, encryption="none", login=None, password=None, max_connections=4
    )
    first, second = workers.start("worker-a"), workers.start("worker-b")
    await first.wait_logged("worker_started")
    await second.wait_logged("worker_started")

    await enqueue_numbered(database_url, 500)
    await workers.wait_sent(probe, 500, within=45)
    for process in (first, second):
        process.send_signal(signal.SIGTERM)
    assert 0 == await first.wait_exit(within=10)
    assert 0 == await second.wait_exit(within=10)

    received = received_message_ids(plain_server)
    assert 500 == len(plain_server.messages)
    assert [] == [message_id for message_id, count in received.items() if count > 1]
    rows = await probe.rows()
    assert set(received) == _message_ids_of(rows)
    assert {("sent", 1)} == {(row.status, row.attempts) for row in rows.values()}
    attempts = await probe.attempts()
    assert 500 == len(attempts)
    assert {"sent"} == {attempt.outcome for attempt in attempts}
    assert sorted(rows) == sorted(attempt.outbox_id for attempt in attempts)
    by_worker = collections.Counter(attempt.worker_id for attempt in attempts)
    assert {"worker-a", "worker-b"} == set(by_worker), by_worker


async def test_killed_worker_loses_nothing(
    settings: Settings,
    database_url: str,
    plain_server: SmtpTestServer,
    workers: WorkerProcesses,
    probe: Probe,
) -> None:
    """kill -9 mid-batch: after the lease expires another worker sends every message.

    Rows in flight at the kill get an 'interrupted' attempt; only they may arrive twice, and
    at most once more each.
    """
    await add_profile(settings, plain_server, encryption="none", login=None, password=None)
    SlowData(0.02).install(plain_server)
    await enqueue_numbered(database_url, 150)
    short_lease = {"MAILWORKER_LEASE_SECONDS": "5"}
    doomed = workers.start("doomed", env=short_lease)
    await wait_until(_received(plain_server, 20), within=20, what="20 sent", context=workers.report)

    doomed.send_signal(signal.SIGKILL)
    assert -signal.SIGKILL == await doomed.wait_exit(within=5)
    # Once its connections are gone nothing it started can still commit.
    await wait_until(_no_backends(probe), within=10, what="the dead worker's connections end")
    in_flight = {row.id: row for row in (await probe.rows()).values() if row.status == "sending"}
    assert in_flight, "the kill landed between batches; nothing was in flight"

    survivor = workers.start("survivor", env=short_lease)
    await workers.wait_sent(probe, 150, within=30)
    survivor.send_signal(signal.SIGTERM)
    assert 0 == await survivor.wait_exit(within=10)

    rows = await probe.rows()
    received = received_message_ids(plain_server)
    assert _message_ids_of(rows) == set(received), "a message was lost"
    duplicated = {message_id: count for message_id, count in received.items() if count > 1}
    assert set(duplicated) <= {row.message_id for row in in_flight.values()}
    assert sum(duplicated.values()) - len(duplicated) <= len(in_flight)
    interrupted = {
        (a.outbox_id, a.attempt_no) for a in await probe.attempts() if a.outcome == "interrupted"
    }
    assert {(row.id, row.attempts) for row in in_flight.values()} == interrupted


def _received(server: SmtpTestServer, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(server.messages) >= count

    return check


def _no_backends(probe: Probe) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return 0 == await probe.other_backends()

    return check


async def test_sigterm_finishes_sends_and_returns_the_rest(
    settings: Settings,
    database_url: str,
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
    probe: Probe,
) -> None:
    """SIGTERM mid-send: exit 0 within the grace period, the send in progress is recorded.

    Afterwards no row is 'sending': the message being sent is 'sent' (once), and the rows the
    worker had claimed but not started are 'pending' again with their attempt not counted.
    Over implicit TLS with AUTH, so closing the pooled connections is part of the shutdown.
    """
    await add_profile(settings, smtps_server, encryption="ssl", max_connections=1)
    slow = SlowData(1.0).install(smtps_server)
    await enqueue_numbered(database_url, 40)
    grace = 5.0
    worker = workers.start("stopping", env={"MAILWORKER_SHUTDOWN_GRACE": str(grace)})
    await wait_until(_received(smtps_server, 1), within=20, what="1 sent", context=workers.report)
    [in_progress] = await wait_until(_in_progress(slow), within=5, what="a send in progress")

    worker.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    assert 0 == await worker.wait_exit(within=grace + 5)
    assert time.monotonic() - signalled_at < grace
    assert signalled_at < slow.finished[in_progress], "the send ended before the SIGTERM"

    rows = await probe.rows()
    assert 0 == sum(row.status == "sending" for row in rows.values())
    [(status, attempts)] = [
        (row.status, row.attempts) for row in rows.values() if [in_progress] == row.to_addrs
    ]
    assert ("sent", 1) == (status, attempts)
    assert all(message.tls_version for message in smtps_server.messages)
    received = received_message_ids(smtps_server)
    assert {row.message_id for row in rows.values() if row.status == "sent"} == set(received)
    assert {1} == set(received.values())
    pending = {row.id: row for row in rows.values() if row.status == "pending"}
    assert {0} == {row.attempts for row in pending.values()}
    attempts = await probe.attempts()
    released = {a.outbox_id for a in attempts if a.outcome == "interrupted"}
    assert released, "no claimed-but-unstarted row was returned at shutdown"
    assert released <= set(pending)
    assert {"sent"} == {a.outcome for a in attempts if a.outbox_id not in pending}


def _in_progress(slow: SlowData) -> Callable[[], Awaitable[tuple[str, ...] | None]]:
    async def check() -> tuple[str, ...] | None:
        return slow.in_progress

    return check


async def test_worker_carries_on_after_a_database_restart(
    settings: Settings,
    plain_server: SmtpTestServer,
    workers: WorkerProcesses,
    private_postgres: PrivatePostgres,
    private_probe: Probe,
) -> None:
    """PostgreSQL restarts under a running worker: it reconnects, LISTEN too, and delivers."""
    url = private_postgres.url
    private = settings.model_copy(update={"database_url": SecretStr(url)})
    await add_profile(private, plain_server, encryption="none", login=None, password=None)
    worker = workers.start("steadfast", env={"DATABASE_URL": url})
    await enqueue_numbered(url, 5)
    await workers.wait_sent(private_probe, 5, within=20)
    listening_before = await wait_until(
        private_probe.listener_pids, within=10, what="the worker listens"
    )

    await asyncio.to_thread(private_postgres.restart)
    await enqueue_numbered(url, 5, start=5)

    await workers.wait_sent(private_probe, 10, within=30)
    listening_after = await wait_until(
        private_probe.listener_pids, within=15, what="the worker listens again"
    )
    assert not set(listening_before) & set(listening_after)
    assert worker.running
    assert 10 == len(plain_server.messages)
    worker.send_signal(signal.SIGTERM)
    assert 0 == await worker.wait_exit(within=10)


async def test_result_of_a_send_is_kept_while_the_database_is_down(
    settings: Settings,
    plain_server: SmtpTestServer,
    workers: WorkerProcesses,
    private_postgres: PrivatePostgres,
    private_probe: Probe,
) -> None:
    """The database stops during a send: once it is back the send is recorded, not repeated.

    The server accepts the message while PostgreSQL is down, and stays down past the lease;
    the worker keeps the result and its claim, writes the result when the database returns,
    and the server has received the message once.
    """
    url = private_postgres.url
    private = settings.model_copy(update={"database_url": SecretStr(url)})
    await add_profile(private, plain_server, encryption="none", login=None, password=None)
    slow = SlowData(2.0).install(plain_server)
    lease = 5.0
    worker = workers.start(
        "patient", env={"DATABASE_URL": url, "MAILWORKER_LEASE_SECONDS": str(lease)}
    )
    [message_id] = await enqueue_numbered(url, 1)
    await wait_until(_in_progress(slow), within=15, what="the send starts")
    send_started = time.monotonic()

    await asyncio.to_thread(private_postgres.stop)
    await asyncio.to_thread(plain_server.wait_for_messages, 1, 10)
    await worker.wait_logged("result_write_failed", within=15)
    # Waiting for time to pass is the point here: the claim's lease expires in the outage.
    await asyncio.sleep(max(0.0, send_started + lease + 1 - time.monotonic()))
    await asyncio.to_thread(private_postgres.start)

    await workers.wait_sent(private_probe, 1, within=20)
    worker.send_signal(signal.SIGTERM)  # and let whatever it might still be sending finish
    assert 0 == await worker.wait_exit(within=10)
    assert 1 == len(plain_server.messages)
    attempts = await private_probe.attempts()
    assert [(message_id, 1, "sent")] == [(a.outbox_id, a.attempt_no, a.outcome) for a in attempts]


async def test_notify_wakes_the_worker_and_listen_reconnects(
    settings: Settings,
    database_url: str,
    plain_server: SmtpTestServer,
    workers: WorkerProcesses,
    probe: Probe,
) -> None:
    """With a 30 s poll a new row is still sent within seconds: the NOTIFY woke the worker.

    After the listening connection is killed, the worker listens again and the next row is
    also sent long before a poll. (A sanity bound only; speed is for the benchmarks.)
    """
    await add_profile(settings, plain_server, encryption="none", login=None, password=None)
    worker = workers.start("listening", env={"MAILWORKER_POLL_INTERVAL": "30"})
    [listener] = await wait_until(probe.listener_pids, within=15, what="the worker listens")
    # The worker also looks once right after LISTEN (for rows it may have missed); let that
    # pass, so only the NOTIFY can bring the worker to the row inserted next.
    await asyncio.sleep(0.5)

    await enqueue_numbered(database_url, 1)
    await workers.wait_sent(probe, 1, within=10)

    await probe.query("SELECT pg_terminate_backend(:pid)", pid=listener)
    [new_listener] = await wait_until(
        _other_listener(probe, listener), within=15, what="the worker listens again"
    )
    await asyncio.sleep(0.5)  # as above
    await enqueue_numbered(database_url, 1, start=1)
    await workers.wait_sent(probe, 2, within=10)
    assert listener != new_listener
    worker.send_signal(signal.SIGTERM)
    assert 0 == await worker.wait_exit(within=10)


def _other_listener(probe: Probe, old: int) -> Callable[[], Awaitable[list[int]]]:
    async def check() -> list[int]:
        return [pid for pid in await probe.listener_pids() if pid != old]

    return check


async def test_interrupted_attempt_names_the_worker_that_died(
    settings: Settings,
    database_url: str,
    plain_server: SmtpTestServer,
    probe: Probe,
) -> None:
    """The attempt recorded when a dead worker's lease is reclaimed names that worker.

    (The database half of the kill -9 test, without the processes.)
    """
    await add_profile(settings, plain_server, encryption="none", login=None, password=None)
    [message_id] = await enqueue_numbered(database_url, 1)
    await probe.query(
        "UPDATE mail.outbox SET status = 'sending', attempts = 1, claimed_by = 'doomed',"
        " claimed_at = now() - interval '10 seconds',"
        " lease_expires_at = now() - interval '1 second' WHERE id = :id",
        id=message_id,
    )
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            counts = await Repository(connection).housekeeping(max_attempts=8, lease_seconds=0)
    finally:
        await engine.dispose()

    assert 1 == counts["reclaimed"]
    [attempt] = await probe.attempts()
    assert (message_id, 1, "interrupted", "doomed") == (
        attempt.outbox_id,
        attempt.attempt_no,
        attempt.outcome,
        attempt.worker_id,
    )
