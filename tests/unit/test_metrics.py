"""Metrics: each outcome lands in its counter, database snapshots replace gauges whole."""

from __future__ import annotations

import dataclasses
import platform
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker import __version__
from worker.caps import CapUsage
from worker.classify import LIMIT_REACHED, PAUSE_CLASSES
from worker.metrics import (
    CapLevel,
    DatabaseSnapshot,
    PausedProfile,
    QueueDepth,
    WorkerMetrics,
    cap_levels,
)
from worker.oauth_app import GrantSummary
from worker.outcomes import Outcome

STARTED = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _outcome(
    attempt_outcome: str, status: str, *, profile: str = "wp", seconds: float = 1.5
) -> Outcome:
    return Outcome(
        message_id=1,
        profile=profile,
        attempt_no=1,
        worker="w",
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=seconds),
        attempt_outcome=attempt_outcome,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        status_reason="",
    )


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _usage(**values: Any) -> CapUsage:
    fields: dict[str, Any] = {
        "name": "wp",
        "daily_cap": None,
        "daily_recipient_cap": None,
        "per_minute_cap": None,
        "day_messages": 0,
        "day_recipients": 0,
        "minute_messages": 0,
        "sending_messages": 0,
        "sending_recipients": 0,
    }
    return CapUsage(**{**fields, **values})


def _snapshot(**values: Any) -> DatabaseSnapshot:
    fields: dict[str, Any] = {"profiles": [], "queue": [], "caps": [], "paused": []}
    return DatabaseSnapshot(**{**fields, **values})


@pytest.mark.parametrize(
    ("attempt_outcome", "status", "counter"),
    [
        ("sent", "sent", "mailworker_messages_sent_total"),
        ("partial", "sent", "mailworker_messages_sent_total"),
        ("failed", "failed", "mailworker_messages_failed_total"),
        ("retry", "pending", "mailworker_messages_retried_total"),
        ("deferred", "pending", "mailworker_messages_deferred_total"),
        ("interrupted", "pending", None),
    ],
)
def test_each_outcome_counts_once_and_is_timed(
    attempt_outcome: str, status: str, counter: str | None
) -> None:
    """An attempt adds 1 to its outcome's counter (none for interrupted) and one observation."""
    metrics = WorkerMetrics()
    metrics.observe(_outcome(attempt_outcome, status, seconds=1.5))

    counters = (
        "mailworker_messages_sent_total",
        "mailworker_messages_failed_total",
        "mailworker_messages_retried_total",
        "mailworker_messages_deferred_total",
    )
    counted = {name: _value(metrics, name, profile="wp") for name in counters}
    assert {name: 1.0 if name == counter else None for name in counters} == counted
    assert 1.0 == _value(metrics, "mailworker_attempt_duration_seconds_count", profile="wp")
    assert 1.5 == _value(metrics, "mailworker_attempt_duration_seconds_sum", profile="wp")
    assert 1.0 == _value(
        metrics, "mailworker_attempt_duration_seconds_bucket", profile="wp", le="2.5"
    )
    assert 0.0 == _value(
        metrics, "mailworker_attempt_duration_seconds_bucket", profile="wp", le="1.0"
    )


def test_workers_do_not_share_metrics() -> None:
    """Each WorkerMetrics has a registry of its own: one worker's sends are not another's."""
    first, second = WorkerMetrics(), WorkerMetrics()
    first.observe(_outcome("sent", "sent"))
    assert (1.0, None) == (
        _value(first, "mailworker_messages_sent_total", profile="wp"),
        _value(second, "mailworker_messages_sent_total", profile="wp"),
    )


def test_a_claim_records_when_and_what() -> None:
    """A claim, even an empty one, sets the last-claim time; claimed messages are counted."""
    metrics = WorkerMetrics()
    assert (None, 0.0) == (
        metrics.last_claim,
        _value(metrics, "mailworker_last_claim_timestamp_seconds"),
    )
    metrics.claimed([])
    assert metrics.last_claim is not None
    claimed_at = _value(metrics, "mailworker_last_claim_timestamp_seconds")
    assert claimed_at is not None
    assert claimed_at > STARTED.timestamp()


def test_snapshot_fills_every_profile_and_replaces_the_last_one() -> None:
    """Known profiles show 0 when idle; a profile no longer paused or queued disappears."""
    metrics = WorkerMetrics()
    until = STARTED + timedelta(hours=1)
    metrics.update_from_database(
        _snapshot(
            profiles=["gmail", "wp"],
            queue=[QueueDepth(profile="wp", status="pending", messages=7, oldest_age=42.5)],
            paused=[PausedProfile(name="wp", until=until, reason="535 5.7.8 Bad\n credentials")],
        )
    )
    assert 1.0 == _value(metrics, "mailworker_database_up")
    assert (7.0, 0.0, 0.0) == (
        _value(metrics, "mailworker_queue_messages", profile="wp", status="pending"),
        _value(metrics, "mailworker_queue_messages", profile="wp", status="sending"),
        _value(metrics, "mailworker_queue_messages", profile="gmail", status="pending"),
    )
    assert (42.5, 0.0) == (
        _value(metrics, "mailworker_oldest_pending_age_seconds", profile="wp"),
        _value(metrics, "mailworker_oldest_pending_age_seconds", profile="gmail"),
    )
    paused = "mailworker_profile_paused_until_timestamp_seconds"
    reason = "credentials"
    assert until.timestamp() == _value(metrics, paused, profile="wp", reason=reason)

    metrics.update_from_database(_snapshot(profiles=["gmail"]))

    assert _value(metrics, paused, profile="wp", reason=reason) is None
    assert _value(metrics, "mailworker_queue_messages", profile="wp", status="pending") is None


def test_no_snapshot_drops_the_database_gauges_and_keeps_the_counters() -> None:
    """When the database does not answer: database_up 0, no stale gauges, counters intact."""
    metrics = WorkerMetrics()
    metrics.observe(_outcome("sent", "sent"))
    metrics.update_from_database(
        _snapshot(
            profiles=["wp"],
            caps=[_usage(daily_cap=5, day_messages=1)],
        )
    )
    metrics.update_from_database(None)

    assert 0.0 == _value(metrics, "mailworker_database_up")
    assert _value(metrics, "mailworker_queue_messages", profile="wp", status="pending") is None
    assert _value(metrics, "mailworker_cap_used", profile="wp", cap="daily_messages") is None
    assert 1.0 == _value(metrics, "mailworker_messages_sent_total", profile="wp")


def test_a_message_not_yet_wanted_is_not_late() -> None:
    """A negative age (only messages scheduled for later) shows as 0, not as a negative age."""
    metrics = WorkerMetrics()
    depth = QueueDepth(profile="wp", status="pending", messages=1, oldest_age=-3600.0)
    metrics.update_from_database(_snapshot(profiles=["wp"], queue=[depth]))
    assert 0.0 == _value(metrics, "mailworker_oldest_pending_age_seconds", profile="wp")


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("550-5.4.5 Daily user sending limit exceeded.\n550 5.4.5 " + "x" * 500, "refused"),
        ("the worker could not say why", "other"),
        (f"{LIMIT_REACHED}: 550 5.4.5 Daily user sending limit exceeded.", "provider_limit"),
        ("535 5.7.8 Username and Password not accepted.", "credentials"),
        ("534-5.7.9 Application-specific password required.", "credentials"),
        ("TLS failed: certificate verify failed: self-signed certificate", "tls"),
        ("refusing to send the password of profile wp over an unencrypted connection", "tls"),
        ("cannot reach the SMTP server (unknown host): smtp.wp.invalid", "unreachable"),
        ("stored password of profile 'wp' cannot be decrypted", "password_unreadable"),
        ("554 5.7.1 Sender address rejected", "refused"),
    ],
)  # fmt: skip
def test_pause_reasons_become_a_few_classes(reason: str, kind: str) -> None:
    """The pause label is a class of the reason, never the server's text: few label values."""
    metrics = WorkerMetrics()
    until = STARTED + timedelta(hours=1)
    metrics.update_from_database(
        _snapshot(profiles=["wp"], paused=[PausedProfile(name="wp", until=until, reason=reason)])
    )
    [label] = [
        sample.labels["reason"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "mailworker_profile_paused_until_timestamp_seconds"
    ]
    assert kind == label
    assert label in PAUSE_CLASSES


def test_build_info_names_the_version() -> None:
    """``mailworker_build_info`` carries the version and the Python, value 1."""
    metrics = WorkerMetrics()
    assert 1.0 == _value(
        metrics, "mailworker_build_info", version=__version__, python=platform.python_version()
    )


def test_cap_levels_count_sends_in_flight() -> None:
    """Used = sent in the window plus in flight; remaining never goes below 0."""
    usage = _usage(
        daily_cap=500,
        daily_recipient_cap=10,
        per_minute_cap=3,
        day_messages=100,
        day_recipients=9,
        minute_messages=3,
        sending_messages=2,
        sending_recipients=4,
    )
    assert [
        CapLevel(cap="daily_messages", limit=500, used=102, remaining=398),
        CapLevel(cap="daily_recipients", limit=10, used=13, remaining=0),
        CapLevel(cap="per_minute_messages", limit=3, used=5, remaining=0),
    ] == list(cap_levels(usage))


def test_only_the_caps_a_profile_has_are_shown() -> None:
    """A profile with a daily cap alone has daily_messages gauges and no others."""
    metrics = WorkerMetrics()
    usage = _usage(name="wp", daily_cap=5, day_messages=3, sending_messages=1)
    metrics.update_from_database(_snapshot(profiles=["wp"], caps=[usage]))
    shown = {
        (sample.name, sample.labels["cap"]): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name.startswith("mailworker_cap_")
    }
    assert {
        ("mailworker_cap_limit", "daily_messages"): 5.0,
        ("mailworker_cap_used", "daily_messages"): 4.0,
        ("mailworker_cap_remaining", "daily_messages"): 1.0,
    } == shown


def test_in_flight_is_read_at_scrape_time() -> None:
    """The in-flight gauge asks the worker when scraped, so it is never stale."""
    in_flight = [3]
    metrics = WorkerMetrics(in_flight=lambda: in_flight[0])
    assert 3.0 == _value(metrics, "mailworker_messages_in_flight")
    in_flight[0] = 0
    assert 0.0 == _value(metrics, "mailworker_messages_in_flight")


def test_an_oauth_profile_shows_its_tokens_expiry_and_renewals_never_a_token() -> None:
    """The stored access token's expiry and how many tokens the workers got, per profile;
    a profile not yet authorised has no expiry."""
    expires = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    authorised = GrantSummary(
        profile="biuro",
        scopes="https://outlook.office.com/SMTP.Send",
        authorized_by="anna@contoso.com",
        authorized_at=expires - timedelta(hours=2),
        access_expires_at=expires,
        refreshed_at=expires - timedelta(hours=1),
        refresh_count=3,
        has_refresh_token=True,
    )
    waiting = dataclasses.replace(
        authorised, profile="gmail", access_expires_at=None, refresh_count=0
    )
    metrics = WorkerMetrics()

    metrics.update_from_database(_snapshot(oauth=[authorised, waiting]))

    expiry = "mailworker_oauth_access_token_expiry_timestamp_seconds"
    assert expires.timestamp() == _value(metrics, expiry, profile="biuro")
    assert _value(metrics, expiry, profile="gmail") is None
    assert 3 == _value(metrics, "mailworker_oauth_token_renewals", profile="biuro")
