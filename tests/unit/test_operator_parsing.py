"""The pure parts of the operator commands: ages, times, and what a profile's status means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.kit.factories import profile_status
from worker.cli.output import age_text
from worker.operations import ProfileStatus, parse_age, parse_since

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w", timedelta(weeks=2)),
        (" 45s ", timedelta(seconds=45)),
        ("6mo", timedelta(days=180)),
        ("1m", timedelta(minutes=1)),
        ("15min", timedelta(minutes=15)),
        ("1y", timedelta(days=365)),
    ],
)
def test_ages_read_as_durations(text: str, expected: timedelta) -> None:
    """An age is a number with a unit, or several run together."""
    assert expected == parse_age(text)


@pytest.mark.parametrize("text", ["30", "0d", "d", "30 days", "-1d", "1.5h", ""])
def test_a_wrong_age_is_refused_with_examples(text: str) -> None:
    """No unit, zero, words or fractions are refused; the message shows the form."""
    with pytest.raises(ValueError, match=r"30d|above zero"):
        parse_age(text)


def test_since_takes_an_age_or_an_iso_time() -> None:
    """An age counts back from now; an ISO time is taken as given, a naive one as local time."""
    assert NOW - timedelta(hours=1) == parse_since("1h", now=NOW)
    given = parse_since("2026-11-30T08:00:00+01:00", now=NOW)
    assert datetime(2026, 11, 30, 7, 0, tzinfo=UTC) == given
    local = parse_since("2026-11-30T08:00", now=NOW)
    assert local.tzinfo is not None
    assert datetime(2026, 11, 30, 8, 0) == local.replace(tzinfo=None)
    with pytest.raises(ValueError, match="neither an age"):
        parse_since("yesterday", now=NOW)


def _status(**values: Any) -> ProfileStatus:
    return profile_status(checked_at=NOW, **values)


def test_state_is_disabled_before_paused_and_a_past_pause_is_over() -> None:
    """Disabled wins over a pause; a pause whose time has passed leaves the profile active."""
    later, earlier = NOW + timedelta(minutes=5), NOW - timedelta(minutes=5)
    assert "paused" == _status(paused_until=later).state
    assert "active" == _status(paused_until=earlier).state
    assert "disabled" == _status(enabled=False, paused_until=later).state


def test_cap_room_counts_sends_and_messages_in_flight() -> None:
    """The room left is the cap less the last 24 h's sends and those in flight, as claims see."""
    capped = _status(daily_cap=300, sent_24h=250, sending=10).as_json()["cap"]
    assert (300, 250, 10, 40, None) == (
        capped["daily"],
        capped["used"],
        capped["in_flight"],
        capped["remaining"],
        capped["full"],
    )
    full = _status(daily_cap=300, sent_24h=300).as_json()["cap"]
    assert (0, "daily cap of 300 messages") == (full["remaining"], full["full"])
    assert _status().as_json()["cap"] is None


def test_json_hides_an_old_pause_and_gives_ages_in_seconds() -> None:
    """A pause that is over is not reported; the oldest pending age is whole seconds."""
    shown = _status(
        paused_until=NOW - timedelta(hours=1),
        pause_reason="535 5.7.8",
        oldest_pending_at=NOW - timedelta(minutes=3, seconds=20),
    ).as_json()
    assert (None, None, 200) == (
        shown["paused_until"],
        shown["pause_reason"],
        shown["oldest_pending_age_seconds"],
    )


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (None, "-"),
        (timedelta(0), "0s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(hours=2), "2h"),
        (timedelta(hours=26, minutes=5, seconds=3), "1d 2h"),
        (timedelta(minutes=3, seconds=20), "3m 20s"),
    ],
)
def test_ages_in_a_table_show_the_two_largest_units(age: timedelta | None, expected: str) -> None:
    """Table ages are short: the two largest non-zero units."""
    assert expected == age_text(age)
