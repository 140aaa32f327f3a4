"""Claiming due rows: fairly across profiles, within their caps, past rows that cannot be read.

One claim is one step against the database (:meth:`Claims.claim`). Without capped profiles
it is a single statement; with them, one transaction locks and counts the caps first, so
workers claiming at the same moment count each other's claims, and a full profile's due rows
are told when its cap has room again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from worker.caps import Room, fit_recipients
from worker.database import Database
from worker.db import DATABASE_ERRORS
from worker.moments import utc_iso
from worker.outcomes import Claimed, storable
from worker.repository import Repository
from worker.sentences import N_
from worker.settings import Settings

__all__ = ["Claim", "Claims"]

# The loop's logger: a claim is a step of the loop.
log = structlog.get_logger("worker")


@dataclasses.dataclass(frozen=True)
class Claim:
    """The rows one claim took, best first, and the earliest moment a cap it met has room."""

    messages: list[Claimed]
    room_at: datetime | None = None


class Claims:
    """How one worker claims; ``held`` (when a claim must be read row by row) says which
    claimed rows the worker already holds."""

    def __init__(
        self,
        database: Database,
        *,
        worker: str,
        settings: Settings,
        held: Callable[[], Sequence[int]],
    ) -> None:
        self._database = database
        self._worker = worker
        self._settings = settings
        self._held = held
        # Whether an enabled profile has a cap, as of the last housekeeping. Until a worker
        # knows of one, its claims leave capped profiles out, so a new cap is never passed.
        self.capped_profiles = False
        self._cap_reached: dict[str, datetime] = {}  # so each cap hit is logged once

    async def claim(self, free_slots: int) -> Claim:
        """Up to ``free_slots`` due rows; none while the database is out of reach."""
        if self.capped_profiles:
            return await self._database.run(
                "claim",
                lambda repository: self._claim_within_caps(repository, free_slots),
                default=Claim([]),
                transaction=True,
            )
        # No cap to lock and count first: one statement claims for every profile.
        messages: list[Claimed] = await self._database.run(
            "claim",
            lambda repository: self._claim_rows(repository, free_slots, include_capped=False),
            default=[],
        )
        return Claim(messages)

    async def _claim_within_caps(self, repository: Repository, free_slots: int) -> Claim:
        """Claim due rows; capped profiles get only what their caps still allow.

        Runs in one transaction that holds the capped profiles' locks until it commits.
        """
        rooms = await repository.cap_rooms()
        cap_room = {name: room.messages for name, room in rooms.items()}
        claimed = await self._claim_rows(repository, free_slots, cap_room=cap_room)
        claimed, excess = fit_recipients(claimed, rooms)
        if excess:
            reason = N_("waiting: the daily recipient cap has no room for this message yet")
            await repository.release_claimed([m.id for m in excess], reason=reason)
            for name in {message.profile.name for message in excess}:
                rooms[name] = rooms[name].without_recipient_room()
        room_at = None
        for name, room in rooms.items():
            if room.full_cap is not None:
                frees_at = await self._defer_until_room(repository, name, room)
                room_at = frees_at if room_at is None else min(room_at, frees_at)
        return Claim(claimed, room_at)

    async def _claim_rows(
        self,
        repository: Repository,
        free_slots: int,
        *,
        cap_room: dict[str, int] | None = None,
        include_capped: bool = True,
    ) -> list[Claimed]:
        """Claim due rows; if one of them cannot be read, read them one by one instead."""
        try:
            return await repository.claim_due(
                worker=self._worker,
                lease_seconds=self._settings.lease_seconds,
                free_slots=free_slots,
                per_connection=self._settings.claim_depth,
                max_message_bytes=self._settings.max_message_bytes,
                cap_room=cap_room,
                include_capped=include_capped,
            )
        except DATABASE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - a row this worker cannot read, e.g. a bad value
            log.error("claim_unreadable", error=f"{type(exc).__name__}: {exc}")
            return await self._read_row_by_row(repository)

    async def _read_row_by_row(self, repository: Repository) -> list[Claimed]:
        """The rows of a claim that could not be read as a whole; those that cannot be read
        alone are set aside (failed, with the reason), so they never stop the others.

        The claim has taken effect (or, inside a transaction, is still in it): its rows are
        the ones this worker claimed but does not hold.
        """
        claimed = []
        unheld = await repository.unheld_claims(worker=self._worker, held=self._held())
        for outbox_id in unheld:
            try:
                message = await repository.load_claimed(
                    outbox_id,
                    worker=self._worker,
                    max_message_bytes=self._settings.max_message_bytes,
                )
            except DATABASE_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - this row alone is the problem
                reason = N_(
                    "the worker cannot read this message (%(error)s);"
                    " it was set aside and will not be sent"
                ) % {"error": f"{type(exc).__name__}: {exc}"}
                await repository.set_aside(outbox_id, worker=self._worker, reason=storable(reason))
                log.error("message_set_aside", outbox_id=outbox_id, reason=reason)
                continue
            if message is not None:
                claimed.append(message)
        return sorted(claimed, key=lambda message: (-message.priority, message.id))

    async def _defer_until_room(self, repository: Repository, name: str, room: Room) -> datetime:
        """A full profile's due messages wait, saying which cap and until when; that moment."""
        frees_at = await repository.cap_frees_at(name, room)
        if frees_at is None:  # only sends in flight fill the cap: look again soon
            frees_at = datetime.now(UTC) + timedelta(seconds=self._settings.poll_interval)
        reason = N_("waiting: %(cap)s reached; room again at %(at)s") % {
            "cap": room.full_cap,
            "at": utc_iso(frees_at),
        }
        deferred = await repository.defer_for_cap(name, until=frees_at, reason=reason)
        if deferred and self._cap_reached.get(name) != frees_at:
            self._cap_reached[name] = frees_at
            log.info(
                "profile_cap_reached", profile=name, cap=room.full_cap, frees_at=utc_iso(frees_at)
            )
        return frees_at
