"""How much a capped profile may still send, and which cap stops it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.kit.factories import make_profile
from worker.caps import DAY, MINUTE, CapUsage, Room, fit_recipients, room_of
from worker.outcomes import Claimed


def _usage(**values: Any) -> CapUsage:
    base: dict[str, Any] = {
        "name": "gmail",
        "daily_cap": None,
        "daily_recipient_cap": None,
        "per_minute_cap": None,
        "day_messages": 0,
        "day_recipients": 0,
        "minute_messages": 0,
        "sending_messages": 0,
        "sending_recipients": 0,
    }
    return CapUsage(**{**base, **values})


def test_daily_cap_leaves_the_difference() -> None:
    """Sent and in-flight messages both count against the daily cap."""
    room = room_of(_usage(daily_cap=500, day_messages=480, sending_messages=5))
    assert Room(messages=15, recipients=None) == room


def test_full_daily_cap_names_itself_and_when_it_frees() -> None:
    """At the cap, room is 0; the oldest send of the window frees the next slot."""
    room = room_of(_usage(daily_cap=5, day_messages=5))
    assert (0, "daily cap of 5 messages", DAY, 0) == (
        room.messages,
        room.full_cap,
        room.window,
        room.frees_after_send,
    )


def test_over_the_cap_waits_for_more_sends_to_age_out() -> None:
    """If more were sent than the cap allows (the cap was lowered), more must age out."""
    assert 3 == room_of(_usage(daily_cap=5, day_messages=8)).frees_after_send


def test_cap_filled_by_in_flight_sends_frees_when_they_end() -> None:
    """When only in-flight sends fill the cap, no past send needs to age out."""
    room = room_of(_usage(daily_cap=5, day_messages=3, sending_messages=2))
    assert (0, None) == (room.messages, room.frees_after_send)


def test_the_tightest_cap_decides() -> None:
    """With a daily and a per-minute cap, the one with less room applies."""
    room = room_of(_usage(daily_cap=2000, per_minute_cap=30, day_messages=100, minute_messages=30))
    assert (0, "cap of 30 messages a minute", MINUTE) == (
        room.messages,
        room.full_cap,
        room.window,
    )


def test_recipient_cap_limits_messages_and_recipients() -> None:
    """A recipient cap bounds both the recipients and (one each at least) the messages."""
    room = room_of(_usage(daily_recipient_cap=10, day_recipients=7, sending_recipients=1))
    assert (2, 2) == (room.messages, room.recipients)


def _claimed(message_id: int, recipients: int) -> Claimed:
    profile = make_profile(name="gmail", preset="gmail")
    now = datetime.now(UTC)
    return Claimed(
        id=message_id, profile=profile, to_addrs=[f"r{i}@x.pl" for i in range(recipients)],
        cc_addrs=[], bcc_addrs=[], subject="", body_text="", body_html=None, headers={},
        priority=0, expires_at=None, kind="notification", attempts=1, message_id="<x@y>",
        created_at=now, claimed_at=now, attachment_bytes=0, message_bytes=0, profile_pause_count=0,
    )  # fmt: skip


def test_fit_recipients_keeps_what_fits_in_order() -> None:
    """Messages are kept in claim order while their recipients fit; the rest go back."""
    claimed = [_claimed(1, 3), _claimed(2, 5), _claimed(3, 1)]
    keep, excess = fit_recipients(claimed, {"gmail": Room(messages=3, recipients=4)})
    assert ([1, 3], [2]) == ([m.id for m in keep], [m.id for m in excess])


def test_fit_recipients_ignores_profiles_without_recipient_cap() -> None:
    """Without a recipient cap every claimed message is kept."""
    claimed = [_claimed(1, 300)]
    keep, excess = fit_recipients(claimed, {"gmail": Room(messages=3, recipients=None)})
    assert ([1], []) == ([m.id for m in keep], [m.id for m in excess])
