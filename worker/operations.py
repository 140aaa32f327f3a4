"""What the operator commands read and decide, without I/O: profile status, message changes, ages.

:class:`ProfileStatus` is a row of :func:`worker.queries.profile_overview`; its cap room comes
from :func:`worker.caps.room_of`, the same arithmetic the worker claims by. :class:`Backlog`
sorts the pending messages by what they wait for, from those rows and
:func:`worker.queries.pending_by_profile`. :class:`MessageChange` is what ``messages retry`` /
``cancel`` did to one requested row, and :func:`change_outcomes` says it in words (the CLI and
the console alike). :func:`parse_age` and :func:`parse_since` read the ``30d`` / ``2h`` /
ISO-time arguments of the commands.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from worker.caps import CapUsage, Room, room_of
from worker.models import CANCELLABLE_STATUSES, MESSAGE_STATUSES, RETRYABLE_STATUSES
from worker.moments import utc_iso
from worker.sentences import N_

__all__ = [
    "CANCELLABLE_STATUSES",
    "FINISHED_STATUSES",
    "MESSAGE_STATUSES",
    "NO_SUCH_MESSAGE",
    "RETRYABLE_STATUSES",
    "Backlog",
    "ChangeOutcome",
    "FailureGroup",
    "MessageChange",
    "MessageDetails",
    "MessageFilter",
    "MessageKey",
    "PendingGroup",
    "ProfileStatus",
    "cancel_refusal",
    "change_outcomes",
    "parse_age",
    "parse_since",
    "parse_statuses",
    "retry_refusal",
]

# Rows the worker never touches again: the only ones purge may delete.
FINISHED_STATUSES = ("sent", "failed", "cancelled")

ProfileState = Literal["active", "paused", "disabled"]

# "m" is a minute, as in 90m; a month is "mo" (30 days), so that 1m never deletes a month.
_UNIT = r"mo|min|[smhdwy]"
_AGE_PART = re.compile(rf"(\d+)\s*({_UNIT})")
_AGE = re.compile(rf"^\s*(?:\d+\s*(?:{_UNIT})\s*)+$")
_UNIT_SECONDS = {
    "s": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}


def parse_age(text: str) -> timedelta:
    """``"30d"``, ``"2h"``, ``"1d12h"``, ``"90m"`` (minutes), ``"6mo"`` (30-day months), ``"1y"``
    → a positive duration; ValueError otherwise."""
    if not _AGE.match(text):
        raise ValueError(
            f"{text!r} is not an age like 30d, 12h, 90m or 1d12h"
            " (s, m or min: minutes, h, d, w, mo: 30-day months, y)"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _AGE_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all; give an age above zero")
    return timedelta(seconds=seconds)


def parse_since(text: str, *, now: datetime) -> datetime:
    """An age back from ``now`` (``"2d"``) or an ISO 8601 time; one without an offset is local."""
    try:
        return now - parse_age(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age like 1h or 2d nor an ISO 8601 time like 2026-12-01T08:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def parse_statuses(text: str) -> tuple[str, ...]:
    """``"failed,cancelled"`` → those statuses; ValueError for an unknown one, or for none."""
    statuses = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [status for status in statuses if status not in MESSAGE_STATUSES]
    if unknown or not statuses:
        raise ValueError(f"{text!r}: statuses are {', '.join(MESSAGE_STATUSES)}")
    return statuses


@dataclasses.dataclass(frozen=True, kw_only=True)
class FailureGroup:
    """Messages of one profile that failed for one reason in the last 24 h."""

    profile: str | None
    profile_exists: bool  # false: unroutable (no profile named, or one that does not exist)
    reason: str
    messages: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FailureGroup:
        return cls(
            profile=row["profile"],
            profile_exists=bool(row["profile_exists"]),
            reason=row["reason"],
            messages=int(row["messages"]),
        )

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProfileStatus:
    """One profile as ``mailworker status`` shows it: state, queue, last 24 h, cap."""

    name: str
    is_default: bool
    enabled: bool
    paused_until: datetime | None
    pause_reason: str | None
    pause_hint: str | None
    daily_cap: int | None
    daily_recipient_cap: int | None
    per_minute_cap: int | None
    pending: int
    oldest_pending_at: datetime | None
    sending: int
    sending_recipients: int
    sent_24h: int
    recipients_24h: int
    sent_last_minute: int
    failed_24h: int
    cap_frees_at: datetime | None  # when the next send of the 24 h window ages out
    checked_at: datetime  # the database's clock when the row was read

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ProfileStatus:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in row.items() if name in names})

    @property
    def state(self) -> ProfileState:
        if not self.enabled:
            return "disabled"
        if self.paused_until is not None and self.paused_until > self.checked_at:
            return "paused"
        return "active"

    @property
    def capped(self) -> bool:
        caps = (self.daily_cap, self.daily_recipient_cap, self.per_minute_cap)
        return any(cap is not None for cap in caps)

    @property
    def cap_full(self) -> bool:
        """Whether a cap leaves no room now: the profile's messages wait until it frees."""
        room = self.room
        return room is not None and room.messages == 0

    @property
    def room(self) -> Room | None:
        """What the caps still allow now (None: the profile has no cap)."""
        if not self.capped:
            return None
        return room_of(
            CapUsage(
                name=self.name,
                daily_cap=self.daily_cap,
                daily_recipient_cap=self.daily_recipient_cap,
                per_minute_cap=self.per_minute_cap,
                day_messages=self.sent_24h,
                day_recipients=self.recipients_24h,
                minute_messages=self.sent_last_minute,
                sending_messages=self.sending,
                sending_recipients=self.sending_recipients,
            )
        )

    @property
    def oldest_pending_age(self) -> timedelta | None:
        if self.oldest_pending_at is None:
            return None
        return max(timedelta(0), self.checked_at - self.oldest_pending_at)

    def as_json(self) -> dict[str, Any]:
        """The plain values ``status --json`` prints; times as ISO 8601 UTC, ages in seconds."""
        paused = self.state == "paused"
        age = self.oldest_pending_age
        return {
            "name": self.name,
            "default": self.is_default,
            "state": self.state,
            "paused_until": utc_iso(self.paused_until) if paused else None,
            "pause_reason": self.pause_reason if paused else None,
            "pause_hint": self.pause_hint if paused else None,
            "pending": self.pending,
            "sending": self.sending,
            "sent_24h": self.sent_24h,
            "failed_24h": self.failed_24h,
            "oldest_pending_at": utc_iso(self.oldest_pending_at),
            "oldest_pending_age_seconds": None if age is None else int(age.total_seconds()),
            "cap": self._cap_json(),
        }

    def _cap_json(self) -> dict[str, Any] | None:
        room = self.room
        if room is None:
            return None
        return {
            "daily": self.daily_cap,
            "daily_recipients": self.daily_recipient_cap,
            "per_minute": self.per_minute_cap,
            "used": self.sent_24h,
            "recipients_used": self.recipients_24h,
            "in_flight": self.sending,
            "remaining": room.messages,
            "full": room.full_cap if room.messages == 0 else None,
            "frees_at": utc_iso(self.cap_frees_at),
        }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageKey:
    """Where a message stands in the newest-first order: ``(created_at, id)``, id breaking ties.

    A page of messages ends at its last row's key; the next page is the rows after it, found
    by the index on ``(created_at, id)`` however deep the page (no OFFSET to count through).
    """

    created_at: datetime
    id: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> MessageKey:
        return cls(created_at=row["created_at"], id=int(row["id"]))

    @property
    def token(self) -> str:
        """The key as a URL-safe text, exact to the microsecond: ``<µs since 1970>_<id>``."""
        return f"{(self.created_at - _EPOCH) // _MICROSECOND}_{self.id}"

    @classmethod
    def parse(cls, token: str) -> MessageKey:
        """The key a :attr:`token` gave; ValueError for any other text."""
        micros, separator, message_id = token.partition("_")
        if not (separator and micros.lstrip("-").isdigit() and message_id.isdigit()):
            raise ValueError(f"{token!r} is not a position in the message list")
        try:
            created_at = _EPOCH + int(micros) * _MICROSECOND
        except OverflowError:
            raise ValueError(f"{token!r} is not a position in the message list") from None
        return cls(created_at=created_at, id=int(message_id))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PendingGroup:
    """The pending messages of one profile name: due now, and waiting for a later moment."""

    profile: str | None
    due: int
    oldest_due_at: datetime | None  # when the oldest due one was first wanted
    later: int
    checked_at: datetime  # the database's clock when the row was read

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PendingGroup:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in row.items() if name in names})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backlog:
    """What waits to be sent, by what it waits for; each pending message counts once."""

    due: int  # a worker may take it now
    oldest_due_age: timedelta | None  # how long the oldest of those has been wanted
    later: int  # a retry or its not_before is still ahead
    held_by_caps: int  # its profile's cap is full
    held_by_profile: int  # its profile is paused or disabled

    @property
    def waiting(self) -> int:
        return self.due + self.later + self.held_by_caps + self.held_by_profile

    @classmethod
    def of(cls, profiles: Sequence[ProfileStatus], pending: Sequence[PendingGroup]) -> Backlog:
        """Sort ``pending`` by its profiles' state; rows of no known profile count as due: a
        worker takes them at once (to fail them, saying why)."""
        states = {item.name: item for item in profiles}
        due = later = held_by_caps = held_by_profile = 0
        oldest: timedelta | None = None
        for group in pending:
            item = states.get(group.profile or "")
            if item is not None and item.state != "active":
                held_by_profile += group.due + group.later
            elif item is not None and item.cap_full:
                held_by_caps += group.due + group.later
            else:
                due, later = due + group.due, later + group.later
                if group.oldest_due_at is not None:
                    age = max(timedelta(0), group.checked_at - group.oldest_due_at)
                    oldest = age if oldest is None else max(oldest, age)
        return cls(
            due=due,
            oldest_due_age=oldest,
            later=later,
            held_by_caps=held_by_caps,
            held_by_profile=held_by_profile,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageFilter:
    """What ``messages list`` selects; None means "any"."""

    statuses: Sequence[str] = ()
    profile: str | None = None
    kind: str | None = None
    since: datetime | None = None
    recipient: str | None = None
    limit: int = 50
    after: MessageKey | None = None  # only rows after this one in the newest-first order


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageChange:
    """A requested row of ``messages retry`` / ``cancel``: its status before, and if it changed."""

    id: int
    status: str
    changed: bool
    expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> MessageChange:
        return cls(
            id=row["id"],
            status=row["status"],
            changed=bool(row["changed"]),
            expires_at=row["expires_at"],
        )


_RETRY_REFUSALS = {
    "pending": N_("not retried: it is pending already"),
    "sending": N_("not retried: it is being sent right now"),
    "sent": N_("not retried: it was sent"),
}
_CANCEL_REFUSALS = {
    "sending": N_("not cancelled: it is being sent right now, and a send cannot be called back"),
    "sent": N_("not cancelled: it was sent already"),
    "failed": N_("not cancelled: it failed already, so it will not be sent"),
}
NO_SUCH_MESSAGE = N_("no such message")


def retry_refusal(change: MessageChange) -> str:
    """Why a requested retry left the message as it was."""
    if change.status in _RETRY_REFUSALS:
        return _RETRY_REFUSALS[change.status]
    return N_("not retried: it expired at %(at)s (expires_at), so it would fail again at once") % {
        "at": utc_iso(change.expires_at) or "-"
    }


def cancel_refusal(change: MessageChange) -> str | None:
    """Why a requested cancel left the message as it was; None: it was cancelled already."""
    if change.status == "cancelled":
        return None
    if change.status in _CANCEL_REFUSALS:
        return _CANCEL_REFUSALS[change.status]
    return N_("not cancelled: it is %(status)s") % {"status": change.status}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChangeOutcome:
    """What became of one requested message: changed, already so, or refused and why."""

    id: int
    result: Literal["changed", "already", "refused"]
    status: str | None = None  # before the request; None: no such message
    refusal: str | None = None  # why not, for a refused one


def change_outcomes(
    ids: Sequence[int],
    changes: Sequence[MessageChange],
    refusal: Callable[[MessageChange], str | None],
) -> list[ChangeOutcome]:
    """One outcome per requested id, in the order asked; ``refusal`` says why a row was left
    (None: it needed no change, e.g. a cancelled message cancelled again)."""
    by_id = {change.id: change for change in changes}
    outcomes = []
    for message_id in ids:
        change = by_id.get(message_id)
        if change is None:
            outcomes.append(ChangeOutcome(id=message_id, result="refused", refusal=NO_SUCH_MESSAGE))
        elif change.changed:
            outcomes.append(ChangeOutcome(id=message_id, result="changed", status=change.status))
        elif (why := refusal(change)) is None:
            outcomes.append(ChangeOutcome(id=message_id, result="already", status=change.status))
        else:
            outcomes.append(
                ChangeOutcome(id=message_id, result="refused", status=change.status, refusal=why)
            )
    return outcomes


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageDetails:
    """Everything ``messages show`` prints: the row, its attachments' names and sizes, attempts."""

    message: Mapping[str, Any]
    attachments: Sequence[Mapping[str, Any]]
    attempts: Sequence[Mapping[str, Any]]
