"""The worker's Prometheus metrics, in a registry of its own (so tests and workers never share).

Two kinds of numbers:

- What this worker did, counted as it happens: :meth:`WorkerMetrics.observe` takes every
  attempt's :class:`~worker.outcomes.Outcome`, :meth:`WorkerMetrics.claimed` every claim.
- What the database holds, the same for every worker: queue depth, the oldest pending
  message's age, cap usage and paused profiles. They are read at scrape time in one
  :class:`DatabaseSnapshot` (see :meth:`worker.repository.Repository.metrics_snapshot`) and
  replace the previous values whole, so a profile that is no longer paused disappears.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from worker import __version__
from worker.caps import CapUsage
from worker.classify import pause_class
from worker.oauth_app import GrantSummary
from worker.outcomes import Claimed, Outcome

__all__ = [
    "ATTEMPT_BUCKETS",
    "CapLevel",
    "DatabaseSnapshot",
    "PausedProfile",
    "QueueDepth",
    "WorkerMetrics",
    "cap_levels",
]

# Seconds. SMTP sends take tenths of a second to seconds; timeouts go up to minutes.
ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
QUEUE_STATUSES = ("pending", "sending")


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueDepth:
    """Unsent messages of one profile in one status."""

    profile: str
    status: str
    messages: int
    oldest_age: float  # seconds since the oldest of them was first wanted; < 0: none is yet

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> QueueDepth:
        return cls(
            profile=row["profile"],
            status=row["status"],
            messages=int(row["messages"]),
            oldest_age=float(row["oldest_age"]),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class PausedProfile:
    """A profile whose messages wait until ``until``, and the reply that paused it."""

    name: str
    until: datetime
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatabaseSnapshot:
    """The database's side of the metrics, read at one scrape."""

    profiles: Sequence[str]  # every profile, so an empty queue shows as 0
    queue: Sequence[QueueDepth]
    caps: Sequence[CapUsage]
    paused: Sequence[PausedProfile]
    oauth: Sequence[GrantSummary] = ()  # OAuth profiles' sign-ins (never a token)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CapLevel:
    """One cap of one profile: its limit, what counts against it now, what is left."""

    cap: str  # daily_messages, daily_recipients or per_minute_messages
    limit: int
    used: int
    remaining: int


def cap_levels(usage: CapUsage) -> Iterator[CapLevel]:
    """Each cap the profile has; sends in flight count, as they do in the claim."""
    messages = usage.sending_messages
    caps = (
        ("daily_messages", usage.daily_cap, usage.day_messages + messages),
        (
            "daily_recipients",
            usage.daily_recipient_cap,
            usage.day_recipients + usage.sending_recipients,
        ),
        ("per_minute_messages", usage.per_minute_cap, usage.minute_messages + messages),
    )
    for cap, limit, used in caps:
        if limit is not None:
            yield CapLevel(cap=cap, limit=limit, used=used, remaining=max(0, limit - used))


class WorkerMetrics:
    """Every metric of one worker, and the times of its last loop turn and claim.

    ``in_flight`` tells how many messages the worker is sending right now (read at scrape).
    """

    def __init__(self, *, in_flight: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.started = time.monotonic()
        self.last_turn: float | None = None  # monotonic; the fetch loop's last turn
        self.last_claim: float | None = None  # monotonic; the last claim that reached the database
        ProcessCollector(registry=self.registry)
        Info("mailworker_build", "The running mailworker.", registry=self.registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self._define_counters()
        self._define_database_gauges()
        self._in_flight = Gauge(
            "mailworker_messages_in_flight",
            "Messages this worker has claimed and not finished.",
            registry=self.registry,
        )
        self._in_flight.set_function(lambda: float(in_flight()))

    def _define_counters(self) -> None:
        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, ["profile"], registry=self.registry)

        self._claimed = counter("mailworker_messages_claimed", "Messages this worker claimed.")
        self._sent = counter(
            "mailworker_messages_sent", "Messages the server accepted for at least one recipient."
        )
        self._failed = counter(
            "mailworker_messages_failed",
            "Messages failed for good: refused, unbuildable, expired, or out of attempts.",
        )
        self._retried = counter(
            "mailworker_messages_retried", "Attempts that ended with a retry scheduled."
        )
        self._deferred = counter(
            "mailworker_messages_deferred",
            "Attempts that ended with the message waiting for its paused profile.",
        )
        self._duration = Histogram(
            "mailworker_attempt_duration_seconds",
            "Duration of each attempt this worker recorded, whatever its outcome.",
            ["profile"],
            buckets=ATTEMPT_BUCKETS,
            registry=self.registry,
        )
        self._last_claim = Gauge(
            "mailworker_last_claim_timestamp_seconds",
            "When this worker's last claim reached the database (even if it found nothing).",
            registry=self.registry,
        )

    def _define_database_gauges(self) -> None:
        def gauge(name: str, documentation: str, labels: Sequence[str]) -> Gauge:
            return Gauge(name, documentation, labels, registry=self.registry)

        self._database_up = Gauge(
            "mailworker_database_up",
            "1 if this scrape read the database, else 0 (and the database gauges are absent).",
            registry=self.registry,
        )
        self._queue = gauge(
            "mailworker_queue_messages",
            "Unsent messages by profile and status (pending, sending). Same in every worker.",
            ["profile", "status"],
        )
        self._oldest = gauge(
            "mailworker_oldest_pending_age_seconds",
            "Seconds since the profile's oldest pending message was first wanted (0: none).",
            ["profile"],
        )
        self._cap_limit = gauge(
            "mailworker_cap_limit", "A profile's cap, per cap.", ["profile", "cap"]
        )
        self._cap_used = gauge(
            "mailworker_cap_used",
            "What counts against a cap now: sent in its window plus in flight.",
            ["profile", "cap"],
        )
        self._cap_remaining = gauge(
            "mailworker_cap_remaining", "What a cap still allows now.", ["profile", "cap"]
        )
        self._paused = gauge(
            "mailworker_profile_paused_until_timestamp_seconds",
            "Until when a paused profile's messages wait, and the kind of reason (credentials,"
            " authorization, provider_limit, tls, unreachable, password_unreadable, refused,"
            " other).",
            ["profile", "reason"],
        )
        self._oauth_expiry = gauge(
            "mailworker_oauth_access_token_expiry_timestamp_seconds",
            "When an OAuth profile's stored access token expires (workers renew it earlier).",
            ["profile"],
        )
        self._oauth_renewals = gauge(
            "mailworker_oauth_token_renewals",
            "Access tokens an OAuth profile's workers got since it was last authorised.",
            ["profile"],
        )

    # --- what the worker did ---------------------------------------------------------------

    def loop_turned(self) -> None:
        self.last_turn = time.monotonic()

    def claimed(self, messages: Sequence[Claimed]) -> None:
        """A claim statement succeeded (``messages`` may be empty)."""
        self.last_claim = time.monotonic()
        self._last_claim.set(time.time())
        for message in messages:
            self._claimed.labels(message.profile.name).inc()

    def observe(self, outcome: Outcome) -> None:
        """One attempt ended; ``outcome`` is what the result writer records."""
        profile = outcome.profile
        seconds = (outcome.finished_at - outcome.started_at).total_seconds()
        self._duration.labels(profile).observe(max(0.0, seconds))
        if outcome.status == "sent":
            self._sent.labels(profile).inc()
        elif outcome.status == "failed":
            self._failed.labels(profile).inc()
        elif outcome.attempt_outcome == "retry":
            self._retried.labels(profile).inc()
        elif outcome.attempt_outcome == "deferred":
            self._deferred.labels(profile).inc()

    # --- what the database holds -----------------------------------------------------------

    def update_from_database(self, snapshot: DatabaseSnapshot | None) -> None:
        """Replace the database gauges with ``snapshot``; ``None``: the database did not answer.

        Runs without an await, so a concurrent scrape never sees half of it.
        """
        for gauge in self._database_gauges():
            gauge.clear()
        self._database_up.set(0 if snapshot is None else 1)
        if snapshot is None:
            return
        for name in snapshot.profiles:
            self._oldest.labels(name).set(0)
            for status in QUEUE_STATUSES:
                self._queue.labels(name, status).set(0)
        for depth in snapshot.queue:
            self._queue.labels(depth.profile, depth.status).set(depth.messages)
            if depth.status == "pending":
                self._oldest.labels(depth.profile).set(max(0.0, depth.oldest_age))
        for usage in snapshot.caps:
            for level in cap_levels(usage):
                self._cap_limit.labels(usage.name, level.cap).set(level.limit)
                self._cap_used.labels(usage.name, level.cap).set(level.used)
                self._cap_remaining.labels(usage.name, level.cap).set(level.remaining)
        for paused in snapshot.paused:
            # A class, not the server's text: label values must stay few (status has the text).
            self._paused.labels(paused.name, pause_class(paused.reason)).set(
                paused.until.timestamp()
            )
        self._update_oauth(snapshot.oauth)

    def _update_oauth(self, grants: Sequence[GrantSummary]) -> None:
        for grant in grants:
            if grant.access_expires_at is not None:
                self._oauth_expiry.labels(grant.profile).set(grant.access_expires_at.timestamp())
            self._oauth_renewals.labels(grant.profile).set(grant.refresh_count)

    def _database_gauges(self) -> tuple[Gauge, ...]:
        return (
            self._queue,
            self._oldest,
            self._cap_limit,
            self._cap_used,
            self._cap_remaining,
            self._paused,
            self._oauth_expiry,
            self._oauth_renewals,
        )

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type, in the format the ``Accept`` header asks for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
