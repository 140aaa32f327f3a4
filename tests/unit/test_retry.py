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


def test_quota_pauses_the_profile() -> None:
    """The provider's limit pauses the profile for the quota pause."""
    decision = _decide(FailureKind.QUOTA)
    assert isinstance(decision, PauseProfile)
    assert NOW + timedelta(seconds=POLICY.quota_pause) == decision.until
