"""Send caps hold: mail over a cap waits with a reason and a time, other profiles go on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.kit.database import sql
from tests.kit.delivery import add_profile, enqueue, fast_settings, run_until_empty
from tests.kit.live_worker import running_worker
from tests.kit.processes import wait_until
from tests.kit.smtp_fixtures import SmtpServerFactory
from worker.db import create_engine
from worker.errors import InvalidMessage
from worker.outbox import enqueue_and_commit
from worker.settings import Settings


async def test_daily_cap_sends_exactly_the_cap(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """Cap 5, 20 messages: 5 go out, 15 stay pending saying why and until when."""
    settings = fast_settings(settings)
    server = smtp_server_factory(tls="none")
    await add_profile(settings, server, encryption="none", login=None, password=None, daily_cap=5)
    await enqueue(settings, count=20)

    started = datetime.now(UTC)
    await run_until_empty(settings)

    assert 5 == len(server.messages)
    waiting = await sql(
        settings,
        "SELECT status, status_reason, next_attempt_at, attempts FROM mail.outbox"
        " WHERE status <> 'sent'",
    )
    assert 15 == len(waiting)
    assert {"pending"} == {row.status for row in waiting}
    assert {0} == {row.attempts for row in waiting}
    [first_sent] = await sql(settings, "SELECT min(sent_at) FROM mail.outbox")
    frees_at = first_sent[0] + timedelta(hours=24)
    assert {frees_at} == {row.next_attempt_at for row in waiting}
    reason = (
        f"waiting: daily cap of 5 messages reached; room again at {frees_at:%Y-%m-%dT%H:%M:%SZ}"
    )
    assert {reason} == {row.status_reason for row in waiting}
    assert started + timedelta(hours=23) < frees_at


async def test_capped_profile_does_not_slow_another(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """A profile at its cap leaves another profile's messages to go out at once."""
    settings = fast_settings(settings)
    capped = smtp_server_factory(tls="none")
    free = smtp_server_factory(tls="none")
    await add_profile(settings, capped, encryption="none", login=None, password=None, daily_cap=2)
    await add_profile(settings, free, name="other", encryption="none", login=None, password=None)
    await enqueue(settings, count=6)
    await enqueue(settings, count=6, profile="other")

    await run_until_empty(settings)

    assert (2, 6) == (len(capped.messages), len(free.messages))


async def test_recipient_cap_counts_recipients(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """A daily recipient cap of 5 lets two 2-recipient messages through, not a third."""
    settings = fast_settings(settings)
    server = smtp_server_factory(tls="none")
    await add_profile(
        settings, server, encryption="none", login=None, password=None, daily_recipient_cap=5
    )
    await enqueue(settings, count=3, to_addrs=["a@example.com", "b@example.com"])

    await run_until_empty(settings)

    assert 2 == len(server.messages)
    [waiting] = await sql(settings, "SELECT status_reason FROM mail.outbox WHERE sent_at IS NULL")
    assert waiting.status_reason.startswith("waiting: ")


async def test_too_many_recipients_for_the_profile_fails(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """A message over the profile's recipients-per-message limit fails with the numbers."""
    settings = fast_settings(settings)
    server = smtp_server_factory(tls="none")
    await add_profile(
        settings, server, encryption="none", login=None, password=None, max_recipients_per_message=2
    )
    await enqueue(settings, to_addrs=["a@example.com", "b@example.com", "c@example.com"])

    await run_until_empty(settings)

    assert 0 == len(server.messages)
    [row] = await sql(settings, "SELECT status, status_reason FROM mail.outbox")
    assert (
        "failed",
        "failed: the message has 3 recipients; profile test allows at most 2 per message",
    ) == (
        row.status,
        row.status_reason,
    )


async def test_enqueue_and_the_worker_apply_one_recipient_rule(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """What enqueue accepts for its recipients the worker sends; what enqueue refuses, put in
    with SQL, the worker fails with the same count. Both count an address once, whatever its
    case or display name. Before: the worker had a copy of the rule of its own."""
    settings = fast_settings(settings)
    server = smtp_server_factory(tls="none")
    await add_profile(
        settings, server, encryption="none", login=None, password=None, max_recipients_per_message=2
    )
    two = {"to": ["a@example.com", "Ala <A@Example.com>"], "bcc": ["b@example.com"]}
    three = {"to": ["a@example.com", "Ala <A@Example.com>"], "bcc": ["c@example.com", "b@x.pl"]}
    engine = create_engine(settings)
    try:
        accepted = await enqueue_and_commit(engine, **two, subject="Dwa")
        with pytest.raises(InvalidMessage) as refused:
            await enqueue_and_commit(engine, **three, subject="Trzy")
    finally:
        await engine.dispose()
    [over] = await enqueue(settings, to_addrs=three["to"], bcc_addrs=three["bcc"])

    await run_until_empty(settings)

    rows = await sql(settings, "SELECT id, status, status_reason FROM mail.outbox ORDER BY id")
    assert [(accepted.id, "sent"), (over, "failed")] == [(r.id, r.status) for r in rows]
    [refusal] = refused.value.problems
    assert refusal.startswith("the message has 3 recipients ")
    assert rows[1].status_reason.startswith("failed: the message has 3 recipients;")


async def test_more_recipients_than_the_daily_cap_fails(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """Recipients beyond the whole daily recipient cap: the row fails, it does not wait forever."""
    settings = fast_settings(settings)
    server = smtp_server_factory(tls="none")
    await add_profile(
        settings, server, encryption="none", login=None, password=None, daily_recipient_cap=2
    )
    await enqueue(settings, to_addrs=["a@example.com", "b@example.com", "c@example.com"])
    [fine] = await enqueue(settings, to_addrs=["d@example.com"])

    await run_until_empty(settings)

    [row] = await sql(
        settings, "SELECT status, status_reason FROM mail.outbox WHERE id <> :id", id=fine
    )
    reason = "the message has 3 recipients, more than the daily cap of 2 recipients of profile test"
    assert ("failed", f"failed: {reason}") == (row.status, row.status_reason)
    assert 1 == len(server.messages)


async def test_cap_set_while_a_worker_runs_is_never_passed(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """A worker that started with no capped profile honours a cap set later.

    One message goes out uncapped; then the profile gets a daily cap of 3 and six more
    arrive: two go out, four wait at the cap.
    """
    settings = fast_settings(settings, poll_interval=0.1, housekeeping_interval=0.3)
    server = smtp_server_factory(tls="none")
    await add_profile(settings, server, encryption="none", login=None, password=None)

    async def first_sent() -> bool:
        return len(server.messages) == 1

    async def four_waiting_at_cap() -> bool:
        rows = await sql(
            settings,
            "SELECT count(*) FROM mail.outbox WHERE status_reason LIKE 'waiting: daily cap%'",
        )
        return 4 == rows[0][0]

    async with running_worker(settings):
        await enqueue(settings, count=1)
        await wait_until(first_sent, within=10, what="the first send")
        await sql(settings, "UPDATE mail.profile SET daily_cap = 3")
        await enqueue(settings, count=6)
        await wait_until(four_waiting_at_cap, within=10, what="four messages waiting at the cap")

    assert 3 == len(server.messages)
