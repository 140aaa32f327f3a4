"""Retry decisions: backoff with jitter, limits, and profile pauses that spend no attempts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from worker.classify import Failure, FailureKind, Stage
from worker.retry import Fail, PauseProfile, Retry, RetryPolicy, decide

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base=30, factor=3, cap=1800, max_attempts=5, max_age=86400)


def _failure(kind: FailureKind) -> Failure:
    return Failure(kind=kind, stage=Stage.SEND, reason="451 4.3.0 try later", hint="do x")


def _decide(kind: FailureKind, attempt: int = 1, age: float = 0, pauses: int = 0) -> object:
    return decide(
        _failure(kind),
        attempt=attempt,
        age=timedelta(seconds=age),
        pause_count=pauses,
        now=NOW,
        policy=POLICY,
        rng=random.Random(7),
    )


def test_transient_failure_retries_later() -> None:
    """A passing failure is retried, between half and all of the backoff delay later."""
    decision = _decide(FailureKind.TRANSIENT, attempt=2)
    assert isinstance(decision, Retry)
    assert NOW + timedelta(seconds=45) <= decision.at <= NOW + timedelta(seconds=90)
    assert decision.reason == "451 4.3.0 try later"


def test_backoff_grows_and_is_capped() -> None:
    """Delays grow by the factor per attempt and never exceed the cap."""
    rng = random.Random(1)
    delays = [POLICY.retry_delay(attempt, rng) for attempt in range(1, 9)]
    assert all(15 <= d <= 30 for d in delays[:1])
    assert all(900 <= d <= 1800 for d in delays[5:])
    assert max(delays) <= POLICY.cap


def test_jitter_spreads_retries() -> None:
    """Two messages failing together do not retry at the same instant."""
    rng = random.Random(3)
    assert POLICY.retry_delay(3, rng) != POLICY.retry_delay(3, rng)


def test_gives_up_after_max_attempts() -> None:
    """The last allowed attempt failing temporarily fails the message with the last reason."""
    decision = _decide(FailureKind.TRANSIENT, attempt=5)
    assert Fail("gave up after 5 attempts; last: 451 4.3.0 try later") == decision


def test_gives_up_after_max_age() -> None:
    """A message retried for longer than the maximum age fails, whatever its attempts."""
    decision = _decide(FailureKind.TRANSIENT, attempt=2, age=86400 * 1.5)
    assert Fail("gave up after 36 h of retries; last: 451 4.3.0 try later") == decision


def test_permanent_failure_fails_at_once() -> None:
    """A permanent failure is final on the first attempt."""
    assert Fail("451 4.3.0 try later") == _decide(FailureKind.PERMANENT, attempt=1)


def test_profile_failure_pauses_with_growing_backoff() -> None:
    """An account problem pauses the profile, longer each time in a row, up to the cap."""
    first = _decide(FailureKind.PROFILE, attempt=5, pauses=0)
    third = _decide(FailureKind.PROFILE, attempt=5, pauses=2)
    many = _decide(FailureKind.PROFILE, attempt=5, pauses=30)
    assert PauseProfile(NOW + timedelta(seconds=60), "451 4.3.0 try later", "do x") == first
    assert isinstance(third, PauseProfile)
    assert NOW + timedelta(seconds=240) == third.until
    assert isinstance(many, PauseProfile)
    assert NOW + timedelta(seconds=3600) == many.until


def test_profile_failure_never_fails_the_message() -> None:
    """Even past max attempts, an account problem makes the message wait, not fail."""
    assert isinstance(_decide(FailureKind.PROFILE, attempt=50, age=10**7), PauseProfile)


def test_rate_limit_pauses_the_profile_for_minutes() -> None:
    """'Too many logins' or 'try again later' pauses for the rate-limit pause, not a day."""
    decision = _decide(FailureKind.QUOTA)
    assert isinstance(decision, PauseProfile)
    assert NOW + timedelta(seconds=POLICY.rate_limit_pause) == decision.until


def _daily(frees_at: datetime | None) -> object:
    failure = Failure(
        kind=FailureKind.QUOTA, stage=Stage.SEND, reason="550 5.4.5 Daily", daily_limit=True
    )
    return decide(
        failure,
        attempt=1,
        age=timedelta(0),
        pause_count=0,
        now=NOW,
        policy=POLICY,
        rng=random.Random(1),
        daily_window_frees_at=frees_at,
    )


def test_daily_limit_pauses_until_the_window_frees() -> None:
    """Gmail's 5.4.5 pauses until the oldest send of the last 24 h turns 24 h old."""
    frees_at = NOW + timedelta(hours=5)
    assert PauseProfile(frees_at, "550 5.4.5 Daily", None) == _daily(frees_at)


def test_daily_limit_pauses_at_most_a_day() -> None:
    """Without recent sends of ours, the pause is the provider's full day, never longer."""
    assert PauseProfile(NOW + timedelta(days=1), "550 5.4.5 Daily", None) == _daily(None)
    late = NOW + timedelta(days=3)
    assert PauseProfile(NOW + timedelta(days=1), "550 5.4.5 Daily", None) == _daily(late)
