"""Send caps hold across worker processes: three ``mailworker run`` racing for one capped profile.

The three workers are started first and the messages inserted afterwards, in one transaction,
so its NOTIFY wakes all three at once and they claim for the same profile at the same moment.
Without the per-profile lock a worker that counts before another's claim commits sees room
that is already taken, and more than the cap goes out.
"""

from __future__ import annotations

import collections
import dataclasses
import signal
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.kit.delivery import add_profile
from tests.kit.processes import (
    Probe,
    WorkerProcesses,
    received_message_ids,
    wait_until,
)
from tests.kit.smtp_server import SmtpTestServer
from worker.models import outbox
from worker.settings import Settings

pytestmark = pytest.mark.timeout(90)

# Each race is run this many times, on a profile of its own: a lost race shows only when the
# workers' claims overlap, which one race does not always make happen. (Without the lock, three
# races of each kind caught the over-send in every one of several runs.)
ROUNDS = 3
# How long the outbox must stay as it settled before the workers are stopped: several polls
# and claims of each worker, in which a cap that did not hold would send more.
STEADY_SECONDS = 1.5


@dataclasses.dataclass(frozen=True)
class CapCase:
    """One cap, how many messages race for it, and what waiting mail must say."""

    kind: str
    cap: dict[str, int]
    messages: int
    room: int
    window: timedelta
    reached: str  # the cap as status_reason names it

    def profile(self, round_: int) -> str:
        return f"{self.kind}-{round_}"

    def sender(self, round_: int) -> str:
        return f"{self.kind}{round_}@example.com"


DAILY = CapCase(
    kind="daily",
    cap={"daily_cap": 5},
    messages=20,
    room=5,
    window=timedelta(hours=24),
    reached="daily cap of 5 messages",
)
# The test ends well inside the minute, before the first send ages out of the window.
PER_MINUTE = CapCase(
    kind="minute",
    cap={"per_minute_cap": 3},
    messages=10,
    room=3,
    window=timedelta(minutes=1),
    reached="cap of 3 messages a minute",
)
CASES = (DAILY, PER_MINUTE)
RACES = [(case, round_) for round_ in range(ROUNDS) for case in CASES]


async def _enqueue_all_at_once(url: str, profile: str, count: int) -> None:
    """``count`` messages for ``profile`` in one transaction, so one NOTIFY wakes every worker."""
    engine = create_async_engine(url, poolclass=NullPool)
    rows = [
        {
            "profile": profile,
            "to_addrs": [f"r{number}@example.com"],
            "subject": f"Wiadomość testowa {number}",
            "body_text": "Treść wiadomości.",
        }
        for number in range(count)
    ]
    try:
        async with engine.begin() as connection:
            await connection.execute(outbox.insert(), rows)
    finally:
        await engine.dispose()


async def _outbox(probe: Probe) -> list[Any]:
    return await probe.query(
        "SELECT id, profile, status, status_reason, attempts, next_attempt_at, sent_at,"
        " message_id FROM mail.outbox ORDER BY id"
    )


def _settled(probe: Probe, workers: WorkerProcesses, case: CapCase, profile: str) -> Any:
    """Something was sent, nothing is being sent, and nothing else is due within half the
    cap's window: the workers have done all they will do for ``profile`` until then."""

    async def check() -> bool:
        workers.assert_running()
        [(sent, unsettled)] = await probe.query(
            "SELECT count(*) FILTER (WHERE status = 'sent'),"
            " count(*) FILTER (WHERE status = 'sending' OR (status = 'pending'"
            "  AND next_attempt_at < now() + make_interval(secs => :half)))"
            " FROM mail.outbox WHERE profile = :profile",
            half=case.window.total_seconds() / 2,
            profile=profile,
        )
        return sent > 0 and unsettled == 0

    return check


def _steady(probe: Probe) -> Any:
    """True once the outbox has not changed for STEADY_SECONDS."""
    seen: dict[str, Any] = {}

    async def check() -> bool:
        rows = await _outbox(probe)
        now = time.monotonic()
        if seen.get("rows") != rows:
            seen.update(rows=rows, since=now)
        return now - seen["since"] >= STEADY_SECONDS

    return check


async def test_three_workers_send_exactly_the_cap(
    settings: Settings, plain_server: SmtpTestServer, workers: WorkerProcesses, probe: Probe
) -> None:
    """Three workers, a profile with a cap, more messages than the cap, inserted at once:
    exactly the cap goes out (the server got that many; that many rows are sent, one attempt
    each), and every other message is pending, untried, saying which cap is full, due again
    when the window frees (the first send's sent_at plus the window). Daily cap 5 with 20
    messages, and 3 a minute with 10, each raced ROUNDS times on a profile of its own."""
    for case, round_ in RACES:
        await add_profile(
            settings,
            plain_server,
            name=case.profile(round_),
            from_address=case.sender(round_),
            encryption="none",
            login=None,
            password=None,
            max_connections=4,  # each worker would claim 16 at once if the cap let it
            **case.cap,
        )
    started = [workers.start(f"worker-{letter}") for letter in "abc"]
    for process in started:
        await process.wait_logged("worker_started")

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    for case, round_ in RACES:
        await _enqueue_all_at_once(url, case.profile(round_), case.messages)
        await wait_until(
            _settled(probe, workers, case, case.profile(round_)),
            within=20,
            what=f"{case.profile(round_)}: the sends done, the rest deferred",
        )
    await wait_until(_steady(probe), within=STEADY_SECONDS * 3, what="the outbox stays as it is")
    for process in started:
        process.send_signal(signal.SIGTERM)
    for process in started:
        assert 0 == await process.wait_exit(within=15)

    rows = await _outbox(probe)
    sent = [row for row in rows if row.status == "sent"]
    assert {case.profile(r): (case.room, case.messages - case.room) for case, r in RACES} == {
        case.profile(r): (
            sum(row.status == "sent" for row in rows if row.profile == case.profile(r)),
            sum(row.status != "sent" for row in rows if row.profile == case.profile(r)),
        )
        for case, r in RACES
    }
    assert {case.sender(r): case.room for case, r in RACES} == dict(
        collections.Counter(received.mail_from for received in plain_server.messages)
    )
    received = received_message_ids(plain_server)
    assert ({row.message_id for row in sent}, {1}) == (set(received), set(received.values()))
    assert {1} == {row.attempts for row in sent}
    for case, round_ in RACES:
        name = case.profile(round_)
        frees_at = min(row.sent_at for row in sent if row.profile == name) + case.window
        reason = f"waiting: {case.reached} reached; room again at {frees_at:%Y-%m-%dT%H:%M:%SZ}"
        assert {("pending", 0, reason, frees_at)} == {
            (row.status, row.attempts, row.status_reason, row.next_attempt_at)
            for row in rows
            if row.profile == name and row.status != "sent"
        }, name
    attempts = await probe.attempts()
    assert sorted(row.id for row in sent) == sorted(attempt.outbox_id for attempt in attempts)
