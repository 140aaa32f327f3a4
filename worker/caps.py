"""Send caps: how much a profile may still send, from what it sent in the rolling windows.

Pure functions; the counting is done by :func:`worker.queries.cap_usage` under a lock that
makes concurrent claims of one profile take turns (see :mod:`worker.queries`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from worker.outcomes import Claimed
from worker.sentences import N_

__all__ = ["CapUsage", "Room", "fit_recipients", "room_of"]

DAY = 86400.0
MINUTE = 60.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class CapUsage:
    """A capped profile's caps and what counts against them right now."""

    name: str
    daily_cap: int | None
    daily_recipient_cap: int | None
    per_minute_cap: int | None
    day_messages: int  # sent in the last 24 h
    day_recipients: int
    minute_messages: int  # sent in the last minute
    sending_messages: int  # claimed and not finished: they count until they fail
    sending_recipients: int

    @classmethod
    def from_row(cls, caps: Mapping[str, Any], usage: Mapping[str, Any]) -> CapUsage:
        return cls(
            name=caps["name"],
            daily_cap=caps["daily_cap"],
            daily_recipient_cap=caps["daily_recipient_cap"],
            per_minute_cap=caps["per_minute_cap"],
            **{key: int(usage[key]) for key in _USAGE_KEYS},
        )


_USAGE_KEYS = (
    "day_messages",
    "day_recipients",
    "minute_messages",
    "sending_messages",
    "sending_recipients",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Room:
    """What a profile may still send now, and if nothing: which cap and when it frees."""

    messages: int
    recipients: int | None  # None: no recipient cap
    full_cap: str | None = None  # e.g. "daily cap of 500 messages"
    window: float = DAY  # seconds of the window of the full cap
    # Sends of that window that must age out before one more fits (0-based offset of the
    # send whose expiry frees room); None when only in-flight sends fill the cap.
    frees_after_send: int | None = None
    recipient_cap: str | None = None  # e.g. "daily cap of 10000 recipients", if there is one

    def without_recipient_room(self) -> Room:
        """This room once a due message's recipients did not fit: wait for sends to age out."""
        return dataclasses.replace(
            self, messages=0, full_cap=self.recipient_cap, window=DAY, frees_after_send=0
        )


def room_of(usage: CapUsage) -> Room:
    """The room left under every cap of the profile; the tightest cap decides."""
    candidates: list[Room] = []
    if usage.daily_cap is not None:
        candidates.append(
            _room(
                usage.daily_cap,
                usage.day_messages,
                usage.sending_messages,
                N_("daily cap of %(count)s messages") % {"count": usage.daily_cap},
                DAY,
            )
        )
    if usage.per_minute_cap is not None:
        candidates.append(
            _room(
                usage.per_minute_cap,
                usage.minute_messages,
                usage.sending_messages,
                N_("cap of %(count)s messages a minute") % {"count": usage.per_minute_cap},
                MINUTE,
            )
        )
    recipients = recipient_cap = None
    if usage.daily_recipient_cap is not None:
        recipient_cap = N_("daily cap of %(count)s recipients") % {
            "count": usage.daily_recipient_cap
        }
        rcpt = _room(
            usage.daily_recipient_cap,
            usage.day_recipients,
            usage.sending_recipients,
            recipient_cap,
            DAY,
        )
        recipients = rcpt.messages
        # Every message has at least one recipient: no more messages than recipients.
        candidates.append(rcpt)
    tightest = min(candidates, key=lambda room: room.messages)
    return dataclasses.replace(tightest, recipients=recipients, recipient_cap=recipient_cap)


def _room(cap: int, sent: int, sending: int, name: str, window: float) -> Room:
    left = max(0, cap - sent - sending)
    if left > 0:
        return Room(messages=left, recipients=None)
    over = sent - cap
    return Room(
        messages=0,
        recipients=None,
        full_cap=name,
        window=window,
        frees_after_send=over if over >= 0 else None,
    )


def fit_recipients(
    claimed: Sequence[Claimed], rooms: Mapping[str, Room]
) -> tuple[list[Claimed], list[Claimed]]:
    """Split claimed messages into those within their profile's recipient room and the rest."""
    left = {name: room.recipients for name, room in rooms.items() if room.recipients is not None}
    keep: list[Claimed] = []
    excess: list[Claimed] = []
    for message in claimed:
        name = message.profile.name
        count = len(message.to_addrs) + len(message.cc_addrs) + len(message.bcc_addrs)
        cap = message.profile.daily_recipient_cap
        never_fits = cap is not None and count > cap  # kept, so the worker fails it in words
        if name in left and count > left[name] and not never_fits:
            excess.append(message)
            continue
        if name in left:
            left[name] -= count
        keep.append(message)
    return keep, excess
