"""The overview's pure parts: what the backlog waits for, and ages in the page's words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.kit.factories import profile_status
from worker.console.i18n import translations
from worker.console.overview import age_words
from worker.operations import Backlog, PendingGroup, ProfileStatus

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _status(name: str, **values: Any) -> ProfileStatus:
    return profile_status(name, checked_at=NOW, **values)


def _pending(profile: str | None, due: int, later: int, oldest: timedelta | None) -> PendingGroup:
    return PendingGroup(
        profile=profile,
        due=due,
        oldest_due_at=None if oldest is None else NOW - oldest,
        later=later,
        checked_at=NOW,
    )


def test_the_backlog_tells_due_later_capped_and_held_messages_apart() -> None:
    """An active account's rows are due or later; a full cap holds all of one account's rows,
    a pause or a disabled account all of another's; the oldest due row is of a usable account,
    or of no known account (a worker takes it at once, to fail it)."""
    profiles = [
        _status("biuro"),
        _status("sklep", daily_cap=3, sent_24h=3),
        _status("stary", paused_until=NOW + timedelta(hours=1)),
        _status("wyl", enabled=False),
    ]
    pending = [
        _pending("biuro", 2, 1, timedelta(minutes=5)),
        _pending("sklep", 4, 2, timedelta(days=1)),
        _pending("stary", 1, 0, timedelta(days=2)),
        _pending("wyl", 0, 3, None),
        _pending("gone", 1, 0, timedelta(minutes=7)),
    ]

    backlog = Backlog.of(profiles, pending)

    assert (
        Backlog(
            due=3, oldest_due_age=timedelta(minutes=7), later=1, held_by_caps=6, held_by_profile=4
        )
        == backlog
    )
    assert 14 == backlog.waiting


def test_an_empty_queue_has_no_oldest_due_message() -> None:
    """No pending row: nothing waits, and no age is made up."""
    backlog = Backlog.of([_status("biuro")], [])
    assert (0, None) == (backlog.waiting, backlog.oldest_due_age)


def test_a_cap_with_room_left_holds_nothing() -> None:
    """A capped account below its caps sends as any other; in-flight sends count against it."""
    roomy = _status("sklep", daily_cap=3, sent_24h=1)
    filled = _status("sklep", daily_cap=3, sent_24h=1, sending=2)
    assert (False, True) == (roomy.cap_full, filled.cap_full)
    assert 2 == Backlog.of([roomy], [_pending("sklep", 2, 0, timedelta(0))]).due


def test_ages_are_said_in_the_two_largest_units_in_each_language() -> None:
    """``3 min 20 s``, ``2 h``, ``1 d 2 h``; Polish units are the same abbreviations."""
    english = translations("en").gettext
    polish = translations("pl").gettext
    assert "3 min 20 s" == age_words(timedelta(minutes=3, seconds=20), english)
    assert "2 h" == age_words(timedelta(hours=2), english)
    assert "1 d 2 h" == age_words(timedelta(hours=26, minutes=5), polish)
    assert "0 s" == age_words(timedelta(0), polish)
