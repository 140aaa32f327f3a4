"""What to do after a failed attempt: a pure function of (failure, attempt, age, profile state)."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import datetime, timedelta

from worker.classify import Failure, FailureKind
from worker.sentences import N_
from worker.settings import Settings

__all__ = ["Decision", "Fail", "PauseProfile", "Retry", "RetryPolicy", "decide"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    base: float = 30.0
    factor: float = 3.0
    cap: float = 1800.0
    max_attempts: int = 8
    max_age: float = 2 * 86400.0
    pause_base: float = 60.0
    pause_cap: float = 3600.0
    rate_limit_pause: float = 600.0  # "too many logins / try again later": minutes, not a day

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base=settings.retry_base,
            factor=settings.retry_factor,
            cap=settings.retry_cap,
            max_attempts=settings.max_attempts,
            max_age=settings.max_age,
            pause_base=settings.pause_base,
            pause_cap=settings.pause_cap,
        )

    def retry_delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        delay = min(self.cap, self.base * math.pow(self.factor, max(0, attempt - 1)))
        return delay / 2 + rng.uniform(0, delay / 2)

    def pause_delay(self, pause_count: int) -> float:
        """How long a profile pauses after its ``pause_count``-th failure in a row (from 1)."""
        return min(self.pause_cap, self.pause_base * math.pow(2, max(0, pause_count - 1)))


@dataclasses.dataclass(frozen=True)
class Retry:
    at: datetime
    reason: str


@dataclasses.dataclass(frozen=True)
class Fail:
    reason: str


@dataclasses.dataclass(frozen=True)
class PauseProfile:
    """The message waits, its attempt not counted, until the profile's pause ends."""

    until: datetime
    reason: str
    hint: str | None


Decision = Retry | Fail | PauseProfile


def decide(
    failure: Failure,
    *,
    attempt: int,
    age: timedelta,
    pause_count: int,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
    daily_window_frees_at: datetime | None = None,
) -> Decision:
    """The next step for a message whose ``attempt``-th attempt (from 1) failed with ``failure``.

    ``pause_count`` is how many times in a row the profile has been paused before this one.
    ``daily_window_frees_at``: when the profile's oldest send of the last 24 h turns 24 h old,
    which is when a provider's rolling daily limit has room again (None: no recent sends).
    """
    if failure.kind is FailureKind.PERMANENT:
        return Fail(failure.reason)
    if failure.kind is FailureKind.QUOTA:
        return PauseProfile(
            _quota_ends(failure, now, policy, daily_window_frees_at), failure.reason, failure.hint
        )
    if failure.kind is FailureKind.PROFILE:
        delay = policy.pause_delay(pause_count + 1)
        return PauseProfile(now + timedelta(seconds=delay), failure.reason, failure.hint)
    if attempt >= policy.max_attempts:
        return Fail(
            N_("gave up after %(attempts)s attempts; last: %(reason)s")
            % {"attempts": attempt, "reason": failure.reason}
        )
    if age.total_seconds() >= policy.max_age:
        return Fail(
            N_("gave up after %(duration)s of retries; last: %(reason)s")
            % {"duration": _duration(age), "reason": failure.reason}
        )
    at = now + timedelta(seconds=policy.retry_delay(attempt, rng))
    return Retry(at, failure.reason)


def _quota_ends(
    failure: Failure, now: datetime, policy: RetryPolicy, daily_window_frees_at: datetime | None
) -> datetime:
    if not failure.daily_limit:
        return now + timedelta(seconds=policy.rate_limit_pause)
    # The provider counts over a rolling 24 h: room comes back as our oldest send ages out,
    # and at the latest 24 h from now.
    latest = now + timedelta(days=1)
    if daily_window_frees_at is None or daily_window_frees_at <= now:
        return latest
    return min(daily_window_frees_at, latest)


def _duration(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{age.total_seconds() / 60:.0f} min"
