"""What a message's state means to someone waiting for it (``message_status.judge``), no I/O."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.message_status import AttemptSummary, MessageStatus, Verdict, judge

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def status(**changes: Any) -> MessageStatus:
    """A test message just queued for an enabled, unpaused profile; ``changes`` override."""
    values: dict[str, Any] = {
        "id": 7,
        "kind": "test",
        "profile": "wp",
        "status": "pending",
        "status_reason": "queued",
        "attempts": 0,
        "next_attempt_at": NOW,
        "last_error": None,
        "smtp_response": None,
        "sent_at": None,
        "claimed_by": None,
        "claimed_at": None,
        "queued_at": NOW,
        "recorded_attempts": 0,
        "checked_at": NOW,
        "latest_attempt": None,
        "profile_enabled": True,
        "profile_paused_until": None,
        "profile_pause_reason": None,
        "profile_pause_hint": None,
    }
    return MessageStatus(**(values | changes))


def attempt(outcome: str, **changes: Any) -> AttemptSummary:
    values: dict[str, Any] = {
        "attempt_no": 1,
        "outcome": outcome,
        "worker_id": "host:1",
        "started_at": NOW,
        "finished_at": NOW,
        "smtp_code": None,
        "smtp_text": None,
        "tls_version": "TLSv1.3",
        "error": None,
    }
    return AttemptSummary(**(values | changes))


def test_a_fresh_message_keeps_the_person_waiting_while_time_remains() -> None:
    """Queued, nobody has looked at it, time left: no answer yet."""
    assert judge(status(), remaining=30, timeout=60) is None


def test_not_picked_up_in_time_asks_whether_a_worker_runs() -> None:
    """Untouched when the time is up: still waiting, and the words ask about `mailworker run`."""
    judgement = judge(status(), remaining=0, timeout=60)

    assert judgement is not None
    assert Verdict.STILL_WAITING == judgement.verdict
    expected = "no worker picked the message up within 60 s — is `mailworker run` running?"
    assert expected == judgement.reason


def test_retrying_is_told_apart_from_not_picked_up() -> None:
    """Tried once and rescheduled beyond the wait: answered at once with error and next time."""
    later = NOW + timedelta(minutes=5)
    retrying = status(
        attempts=1,
        recorded_attempts=1,
        next_attempt_at=later,
        last_error="451 4.3.0 Try later",
        latest_attempt=attempt("retry"),
    )

    judgement = judge(retrying, remaining=30, timeout=60)

    assert judgement is not None
    assert Verdict.STILL_WAITING == judgement.verdict
    assert judgement.reason == (
        "picked up, but not sent after 1 attempt(s); last error: 451 4.3.0 Try later;"
        " next attempt at 2026-12-01T08:05:00Z (in 300 s)"
    )


def test_a_message_being_sent_is_waited_for_then_named() -> None:
    """While a worker sends it there is no answer; when time runs out the worker is named."""
    sending = status(status="sending", attempts=1, claimed_by="host:1", claimed_at=NOW)

    assert judge(sending, remaining=5, timeout=60) is None
    judgement = judge(sending, remaining=0, timeout=60)
    assert judgement is not None
    assert "worker host:1 is sending it right now (attempt 1, since 2026-12-01T08:00:00Z)" == (
        judgement.reason
    )


def test_sent_is_delivered_with_the_reply() -> None:
    """A sent row is delivered, whatever time remains; the reason is the server's reply."""
    sent = status(status="sent", smtp_response="250 2.0.0 OK", latest_attempt=attempt("sent"))

    judgement = judge(sent, remaining=-1, timeout=60)

    assert judgement is not None
    assert (Verdict.DELIVERED, "250 2.0.0 OK") == (judgement.verdict, judgement.reason)


def test_a_deferred_attempt_is_an_account_problem_at_once() -> None:
    """A refused login paused the profile: not delivered now, with the worker's hint."""
    deferred = status(
        latest_attempt=attempt("deferred", error="535 5.7.8 Bad credentials"),
        recorded_attempts=1,
        profile_paused_until=NOW + timedelta(seconds=60),
        profile_pause_hint="check the login and password of the profile",
    )

    judgement = judge(deferred, remaining=50, timeout=60)

    assert judgement is not None
    assert (Verdict.NOT_DELIVERED, True) == (judgement.verdict, judgement.account_problem)
    assert "535 5.7.8 Bad credentials" == judgement.reason
    assert "check the login and password of the profile" == judgement.hint


def test_a_pause_that_ends_within_the_wait_is_waited_out() -> None:
    """Paused for 10 s more with 50 s to wait: the test message will be the probe, so wait."""
    paused = status(profile_paused_until=NOW + timedelta(seconds=10), profile_pause_reason="x")

    assert judge(paused, remaining=50, timeout=60) is None


def test_a_pause_that_outlasts_the_wait_is_an_answer() -> None:
    """Paused for an hour: not delivered, saying until when and why."""
    paused = status(
        profile_paused_until=NOW + timedelta(hours=1), profile_pause_reason="daily limit"
    )

    judgement = judge(paused, remaining=50, timeout=60)

    assert judgement is not None
    assert Verdict.NOT_DELIVERED == judgement.verdict
    assert "profile wp is paused until 2026-12-01T09:00:00Z: daily limit" == judgement.reason


def test_a_disabled_profile_is_an_answer_with_the_way_to_enable_it() -> None:
    """A disabled profile sends nothing: not delivered, and the hint says how to enable it."""
    judgement = judge(status(profile_enabled=False), remaining=50, timeout=60)

    assert judgement is not None
    assert Verdict.NOT_DELIVERED == judgement.verdict
    assert "enable it with `mailworker profiles edit wp --enable`" == judgement.hint


def test_failed_gives_the_last_error() -> None:
    """A failed row is not delivered; the reason is the server's refusal."""
    failed = dataclasses.replace(
        status(status="failed", last_error="554 5.6.0 Rejected", attempts=1),
        status_reason="failed: 554 5.6.0 Rejected",
    )

    judgement = judge(failed, remaining=50, timeout=60)

    assert judgement is not None
    assert (Verdict.NOT_DELIVERED, "554 5.6.0 Rejected") == (judgement.verdict, judgement.reason)


def test_a_cap_deferral_names_the_cap_not_a_missing_worker() -> None:
    """Untouched by a send but deferred by a cap: the reason is the cap's, with the time."""
    capped = status(
        status_reason="waiting: daily_cap reached; room again at 2026-12-01T10:00:00Z",
        next_attempt_at=NOW + timedelta(hours=2),
    )

    judgement = judge(capped, remaining=50, timeout=60)

    assert judgement is not None
    assert Verdict.STILL_WAITING == judgement.verdict
    assert judgement.reason.startswith("not sent yet: waiting: daily_cap reached")
    assert "no worker" not in judgement.reason
