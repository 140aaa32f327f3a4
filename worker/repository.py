"""The only code that talks to the database: one method per intent, over one connection.

A :class:`Repository` wraps an ``AsyncConnection`` whose transaction the caller controls, so
an enqueue can join the caller's own transaction. The claim and the result batch, the
statements a busy worker runs most, go straight to asyncpg (:mod:`worker.driver`): they
need an autocommit connection, or a transaction that an earlier statement has begun.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from worker import driver, queries
from worker.addresses import address_forms
from worker.caps import CapUsage, Room, room_of
from worker.console_users import ConsoleUser
from worker.message_status import AttemptSummary, MessageStatus
from worker.metrics import DatabaseSnapshot, PausedProfile, QueueDepth
from worker.models import MESSAGE_STATUSES
from worker.oauth_app import GrantSummary, StoredGrant
from worker.operations import (
    FailureGroup,
    MessageChange,
    MessageDetails,
    MessageFilter,
    PendingGroup,
    ProfileStatus,
)
from worker.outcomes import Claimed, Outcome
from worker.profiles import Profile

__all__ = ["Repository"]


class Repository:
    """The service's database operations over one connection, each method named for its intent.

    Every statement comes from :mod:`worker.queries`; rows come back as the service's types.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    # --- profiles ----------------------------------------------------------------------------

    async def list_profiles(self) -> list[Profile]:
        """Every profile, by account name."""
        result = await self._connection.execute(queries.select_profiles())
        return [Profile.from_row(row) for row in result.mappings()]

    async def get_profile(self, name: str) -> Profile | None:
        """The profile with this account name; None: no such profile."""
        result = await self._connection.execute(queries.select_profile_by_name(name))
        row = result.mappings().one_or_none()
        return None if row is None else Profile.from_row(row)

    async def get_default_profile(self) -> Profile | None:
        """The profile marked as the default one; None: no profile is."""
        result = await self._connection.execute(queries.select_default_profile())
        row = result.mappings().one_or_none()
        return None if row is None else Profile.from_row(row)

    async def profile_exists(self, name: str) -> bool:
        """Whether a profile with this account name exists."""
        return bool(await self._connection.scalar(queries.profile_exists(name)))

    async def create_profile(self, values: Mapping[str, Any]) -> int:
        """Store a new profile from its column values; its id."""
        return int((await self._connection.execute(queries.insert_profile(values))).scalar_one())

    async def update_profile(self, name: str, values: Mapping[str, Any]) -> bool:
        """Apply ``values`` to the named profile; ``False`` when there is no such profile.

        The edit ends the profile's pause, and its messages waiting for the pause (or a retry)
        are due at once: the person has just fixed what was wrong.
        """
        result = await self._connection.execute(queries.update_profile(name, values))
        if result.scalar_one_or_none() is None:
            return False
        await self._connection.execute(queries.release_waiting_messages(name))
        return True

    async def remove_profile(self, name: str) -> bool:
        """Delete the named profile; ``False`` when there is no such profile."""
        result = await self._connection.execute(queries.delete_profile(name))
        return result.scalar_one_or_none() is not None

    async def make_default_profile(self, name: str) -> bool:
        """Mark the named profile as the only default; ``False`` when there is no such profile."""
        await self._connection.execute(queries.clear_default_profile())
        result = await self._connection.execute(queries.set_default_profile(name))
        return result.scalar_one_or_none() is not None

    async def count_waiting_messages(self, name: str, *, include_unassigned: bool) -> int:
        """Unsent messages for the named profile (and those naming none, if asked)."""
        query = queries.count_waiting_messages(name, include_unassigned=include_unassigned)
        return int(await self._connection.scalar(query) or 0)

    # --- outbox ------------------------------------------------------------------------------

    async def insert_message(
        self, values: Mapping[str, Any], attachments: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[int, bool]:
        """Insert a message and its attachments; ``(id, created)``.

        When the idempotency key is already taken nothing is inserted and the existing
        message's id comes back with ``created=False``.
        """
        statement = queries.insert_message(tuple(values))
        new_id = (await self._connection.execute(statement, dict(values))).scalar()
        if new_id is None:
            key = values["idempotency_key"]
            existing = await self._connection.scalar(queries.message_id_by_idempotency_key(key))
            return int(existing), False
        if attachments:
            await self._connection.execute(
                queries.insert_attachments(),
                [{**row, "outbox_id": new_id} for row in attachments],
            )
        return int(new_id), True

    # --- delivery ----------------------------------------------------------------------------

    async def claim_due(
        self,
        *,
        worker: str,
        lease_seconds: float,
        free_slots: int,
        per_connection: int,
        max_message_bytes: int,
        cap_room: Mapping[str, int] | None = None,
        include_capped: bool = True,
    ) -> list[Claimed]:
        """Claim due rows for ``free_slots`` (see :func:`worker.queries.claim_due`).

        A row whose values cannot be read raises here, after the claim took effect; the
        caller then reads the rows of the claim one by one (:meth:`unheld_claims`,
        :meth:`load_claimed`) and sets the bad ones aside.
        """
        parameters = {
            "include_capped": include_capped,
            "worker": worker,
            "lease_seconds": lease_seconds,
            "free_slots": free_slots,
            "per_connection": per_connection,
            "cap_room": dict(cap_room or {}),
            "max_message_bytes": max_message_bytes,
        }
        statement = driver.driver_statement(self._connection, queries.claim_due)
        rows = await driver.fetch(self._connection, statement, parameters)
        reader = _ClaimedReader(statement.columns)
        return sorted(
            (reader.read(row) for row in rows),
            key=lambda claimed: (-claimed.priority, claimed.id),
        )

    async def unheld_claims(self, *, worker: str, held: Sequence[int]) -> list[int]:
        """Ids of rows claimed by ``worker`` that it does not hold (a claim it could not read)."""
        statement = queries.unheld_claims(worker=worker, held=list(held))
        return [int(row_id) for row_id in await self._connection.scalars(statement)]

    async def load_claimed(
        self, outbox_id: int, *, worker: str, max_message_bytes: int
    ) -> Claimed | None:
        """One row claimed by ``worker``, as a claim returns it; None: no longer its claim."""
        parameters = {"id": outbox_id, "worker": worker, "max_message_bytes": max_message_bytes}
        result = await self._connection.execute(queries.select_claimed(), parameters)
        row = result.one_or_none()
        return None if row is None else _ClaimedReader(list(result.keys())).read(row)

    async def set_aside(self, outbox_id: int, *, worker: str, reason: str) -> None:
        """Fail a claimed row the worker cannot handle, saying why, without reading it."""
        await self._connection.execute(
            queries.set_aside(outbox_id=outbox_id, worker=worker, reason=reason)
        )

    async def load_attachments(self, outbox_id: int) -> list[tuple[str, str, bytes]]:
        """A message's attachments as ``(filename, content type, content)``, in order."""
        result = await self._connection.execute(queries.select_attachments(outbox_id))
        return [(row.filename, row.content_type, row.content) for row in result]

    async def renew_leases(self, *, worker: str, lease_seconds: float, held: Sequence[int]) -> int:
        """Extend the leases of the rows ``held`` by this worker; how many were extended."""
        if not held:
            return 0
        result = await self._connection.execute(
            queries.renew_leases(worker=worker, lease_seconds=lease_seconds, held=list(held))
        )
        return result.rowcount

    async def record_outcomes(self, outcomes: Sequence[Outcome], *, replayed: bool = False) -> None:
        """Write a batch of attempt results: row states, attempt records, profile pauses.

        ``replayed``: the results come from a journal and may have been written before; an
        attempt record already stored is not stored twice. The batch is one transaction of
        its own (a savepoint inside a transaction), so a refused batch can be written again.
        """
        if not outcomes:
            return
        build = queries.record_results_once if replayed else queries.record_results
        record = driver.driver_statement(self._connection, build)
        values = _result_arrays(outcomes)
        changes = [change for change in map(_profile_change, outcomes) if change is not None]
        if not changes:  # one statement: a transaction of its own
            await driver.execute(self._connection, record, values)
            return
        async with driver.transaction(self._connection):
            await driver.execute(self._connection, record, values)
            for change in changes:
                await driver.execute_once(self._connection, change)

    async def count_pending(self) -> int:
        """Messages waiting to be sent, due or not."""
        return int(await self._connection.scalar(queries.count_pending()) or 0)

    async def work_due_within(self, seconds: float) -> bool:
        """Whether a message of a usable profile becomes due within ``seconds``."""
        return bool(await self._connection.scalar(queries.work_due_within(seconds)))

    async def next_scheduled(self) -> datetime | None:
        """The earliest future moment a message becomes due or a pause ends (None: none)."""
        moment: datetime | None = await self._connection.scalar(queries.next_scheduled())
        return moment

    async def any_capped_profile(self) -> bool:
        """Whether an enabled profile has a cap (claims then lock and count caps first)."""
        return bool(await self._connection.scalar(queries.any_capped_profile()))

    async def housekeeping(self, *, max_attempts: int, lease_seconds: float) -> dict[str, int]:
        """Return lost leases, fail expired and unroutable rows, explain waiting ones.

        ``lease_seconds``: leases are reclaimed only once the database server has been up that
        long; the server is noted first, so a restart or failover is seen before any reclaim.
        """
        await self._connection.execute(queries.watch_server())
        reclaim = queries.reclaim_lost_leases(
            max_attempts=max_attempts, lease_seconds=lease_seconds
        )
        counts = {}
        for name, statement in (
            ("reclaimed", reclaim),
            ("expired", queries.fail_expired()),
            ("unroutable", queries.fail_unroutable()),
            ("explained", queries.explain_waiting()),
        ):
            counts[name] = (await self._connection.execute(statement)).rowcount
        return counts

    # --- caps --------------------------------------------------------------------------------

    async def cap_rooms(self) -> dict[str, Room]:
        """Lock every usable capped profile for this transaction and measure its room."""
        capped = (await self._connection.execute(queries.lock_capped_profiles())).mappings()
        caps = {row["name"]: row for row in capped}
        if not caps:
            return {}
        usage = await self._connection.execute(queries.cap_usage(list(caps)))
        return {
            row["name"]: room_of(CapUsage.from_row(caps[row["name"]], row))
            for row in usage.mappings()
        }

    async def cap_frees_at(self, name: str, room: Room) -> datetime | None:
        """When the full cap of ``room`` has room again (None: as soon as in-flight sends end)."""
        if room.frees_after_send is None:
            return None
        oldest = await self._connection.scalar(
            queries.nth_oldest_send(name, window_seconds=room.window, offset=room.frees_after_send)
        )
        return None if oldest is None else oldest + timedelta(seconds=room.window)

    async def daily_window_frees_at(self, name: str) -> datetime | None:
        """When the profile's oldest send of the last 24 h turns 24 h old (None: no sends)."""
        oldest = await self._connection.scalar(
            queries.nth_oldest_send(name, window_seconds=86400, offset=0)
        )
        return None if oldest is None else oldest + timedelta(days=1)

    async def defer_for_cap(self, name: str, *, until: datetime, reason: str) -> int:
        """The profile's due messages wait until its cap has room; how many."""
        result = await self._connection.execute(
            queries.defer_for_cap(name, until=until, reason=reason)
        )
        return result.rowcount

    async def release_claimed(self, ids: list[int], *, reason: str) -> None:
        """Put claimed rows back in the queue untouched; their attempt does not count."""
        await self._connection.execute(queries.release_claimed(ids, reason=reason))

    # --- status ------------------------------------------------------------------------------

    async def message_status(self, message_id: int) -> MessageStatus | None:
        """The message's state with its latest attempt and its profile's pause; None: no such."""
        result = await self._connection.execute(queries.message_status(message_id))
        row = result.mappings().one_or_none()
        return None if row is None else _message_status(row)

    async def cancel_pending_message(self, message_id: int, *, reason: str) -> bool:
        """Withdraw the message if it is still pending; ``False`` when it was too late."""
        result = await self._connection.execute(
            queries.cancel_pending_message(message_id, reason=reason)
        )
        return result.scalar_one_or_none() is not None

    async def schema_revision(self) -> str | None:
        """The schema version the migrations left (None: an empty version table)."""
        revision: str | None = await self._connection.scalar(queries.schema_revision())
        return revision

    # --- metrics -----------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self._connection.scalar(queries.ping())

    async def metrics_snapshot(self) -> DatabaseSnapshot:
        """Queue depth, cap usage and paused profiles, as the metrics show them."""
        queue = await self._connection.execute(queries.queue_depth())
        depths = [QueueDepth.from_row(row) for row in queue.mappings()]
        profiles = list((await self._connection.execute(queries.metrics_profiles())).mappings())
        capped = {
            row["name"]: row
            for row in profiles
            if any(row[cap] is not None for cap in _CAP_COLUMNS)
        }
        caps: list[CapUsage] = []
        if capped:
            usage = await self._connection.execute(queries.cap_usage(list(capped)))
            caps = [CapUsage.from_row(capped[row["name"]], row) for row in usage.mappings()]
        paused = [
            PausedProfile(
                name=row["name"], until=row["paused_until"], reason=row["pause_reason"] or ""
            )
            for row in profiles
            if row["paused_until"] is not None
        ]
        return DatabaseSnapshot(
            profiles=[row["name"] for row in profiles],
            queue=depths,
            caps=caps,
            paused=paused,
            oauth=list((await self.oauth_grants()).values()),
        )

    # --- operations --------------------------------------------------------------------------

    async def database_time(self) -> datetime:
        """The database's clock: operator ages and cutoffs are measured on it."""
        moment: datetime = (await self._connection.execute(queries.database_time())).scalar_one()
        return moment

    async def profile_overview(self) -> list[ProfileStatus]:
        """Every profile's state, queue, last 24 h and cap usage, in one query."""
        result = await self._connection.execute(queries.profile_overview())
        return [ProfileStatus.from_row(row) for row in result.mappings()]

    async def failures_by_reason(self) -> list[FailureGroup]:
        """What failed in the last 24 h, by profile and reason, most first."""
        result = await self._connection.execute(queries.failures_by_reason())
        return [FailureGroup.from_row(row) for row in result.mappings()]

    async def messages_by_status(self) -> list[tuple[str, int]]:
        """Rows waiting and being sent now, and sent, failed, cancelled in the last 24 h; every
        status in the order of a message's life."""
        result = await self._connection.execute(queries.messages_by_status())
        counted = {row["status"]: int(row["messages"]) for row in result.mappings()}
        return [(status, counted.get(status, 0)) for status in MESSAGE_STATUSES]

    async def pending_by_profile(self) -> list[PendingGroup]:
        """Pending messages per profile name: due now (and the oldest's time), and later."""
        result = await self._connection.execute(queries.pending_by_profile())
        return [PendingGroup.from_row(row) for row in result.mappings()]

    async def search_messages(self, selection: MessageFilter) -> list[dict[str, Any]]:
        """Summaries of the outbox rows the filter selects, newest first."""
        after = selection.after
        statement = queries.search_messages(
            **_filter_arguments(selection),
            limit=selection.limit,
            after=None if after is None else (after.created_at, after.id),
        )
        return [dict(row) for row in (await self._connection.execute(statement)).mappings()]

    async def count_messages(self, selection: MessageFilter) -> int:
        """How many outbox rows the filter selects (its limit and position left aside)."""
        statement = queries.count_messages(**_filter_arguments(selection))
        return int(await self._connection.scalar(statement) or 0)

    async def message_details(self, outbox_id: int) -> MessageDetails | None:
        """A message with its attachments' names and sizes and its attempts; None: no such."""
        found = await self._connection.execute(queries.select_message(outbox_id))
        message = found.mappings().one_or_none()
        if message is None:
            return None
        files = await self._connection.execute(queries.attachment_sizes(outbox_id))
        attempts = await self._connection.execute(queries.attempt_history(outbox_id))
        return MessageDetails(
            message=dict(message),
            attachments=[dict(row) for row in files.mappings()],
            attempts=[dict(row) for row in attempts.mappings()],
        )

    async def requeue_messages(self, ids: Sequence[int]) -> list[MessageChange]:
        """Failed or cancelled messages among ``ids`` are due again; what each one was."""
        result = await self._connection.execute(queries.requeue_messages(list(ids)))
        return [MessageChange.from_row(row) for row in result.mappings()]

    async def requeue_failed(self, profile_name: str | None) -> list[MessageChange]:
        """Every failed message (of one profile, if given) is due again; what each one was."""
        result = await self._connection.execute(queries.requeue_failed(profile_name))
        return [MessageChange.from_row(row) for row in result.mappings()]

    async def cancel_pending(self, ids: Sequence[int]) -> list[MessageChange]:
        """Pending messages among ``ids`` are cancelled; what each one was."""
        result = await self._connection.execute(queries.cancel_pending(list(ids)))
        return [MessageChange.from_row(row) for row in result.mappings()]

    async def wake_workers(self, channel: str) -> None:
        """Listening workers wake when this transaction commits."""
        await self._connection.execute(queries.wake_workers(channel))

    async def count_purgeable(self, statuses: Sequence[str], cutoff: datetime) -> int:
        """How many finished rows of ``statuses`` finished before ``cutoff``."""
        query = queries.count_purgeable(list(statuses), cutoff)
        return int(await self._connection.scalar(query) or 0)

    async def purge_batch(
        self, statuses: Sequence[str], cutoff: datetime, *, after_id: int, size: int
    ) -> list[int]:
        """Delete one batch of finished rows after ``after_id``; their ids, ascending."""
        statement = queries.purge_batch(list(statuses), cutoff, after_id=after_id, size=size)
        return sorted(int(row_id) for row_id in (await self._connection.scalars(statement)))

    async def lock_password_tokens(self) -> list[tuple[str, bytes]]:
        """Every stored password token by profile name, locked for this transaction."""
        result = await self._connection.execute(queries.lock_password_tokens())
        return [(row.name, bytes(row.password_encrypted)) for row in result]

    async def replace_password_tokens(self, tokens: Mapping[str, bytes]) -> None:
        """Store re-encrypted tokens; the profiles are otherwise untouched (pauses stay)."""
        if tokens:
            await self._connection.execute(
                queries.replace_password_token(),
                [{"b_name": name, "b_token": token} for name, token in tokens.items()],
            )

    # --- OAuth 2.0 grants --------------------------------------------------------------------

    async def oauth_grant(self, profile_id: int, *, lock: bool = False) -> StoredGrant | None:
        """A profile's stored tokens; ``lock`` holds the row until this transaction ends (it
        is made first if there is none, so that even the first token is asked for once)."""
        if lock:
            await self._connection.execute(queries.ensure_oauth_grant(profile_id))
        result = await self._connection.execute(queries.select_oauth_grant(profile_id, lock=lock))
        row = result.mappings().first()
        return None if row is None else StoredGrant(**dict(row))

    async def store_oauth_grant(self, profile_id: int, values: Mapping[str, Any]) -> None:
        """Store (some of) a profile's grant columns; the others keep their values."""
        await self._connection.execute(
            queries.store_oauth_grant({"profile_id": profile_id, **values})
        )

    async def lock_oauth_secrets(self) -> list[tuple[str, str, bytes]]:
        """Every stored OAuth secret as (profile name, what, encrypted), locked for this
        transaction; what is ``credential``, ``refresh_token`` or ``access_token``."""
        secrets = [
            (row.name, "credential", bytes(row.oauth_credential_encrypted))
            for row in await self._connection.execute(queries.lock_oauth_credentials())
        ]
        for row in await self._connection.execute(queries.lock_oauth_grant_tokens()):
            for what in ("refresh_token", "access_token"):
                token = getattr(row, f"{what}_encrypted")
                if token is not None:
                    secrets.append((row.name, what, bytes(token)))
        return secrets

    async def replace_oauth_secrets(self, secrets: Mapping[tuple[str, str], bytes]) -> None:
        """Store re-encrypted OAuth secrets, keyed as :meth:`lock_oauth_secrets` names them;
        a grant's token not given keeps its value."""
        credentials = [
            {"b_name": name, "b_token": token}
            for (name, what), token in secrets.items()
            if what == "credential"
        ]
        if credentials:
            await self._connection.execute(queries.replace_oauth_credential(), credentials)
        grants = []
        for row in await self._connection.execute(queries.lock_oauth_grant_tokens()):
            refresh = secrets.get((row.name, "refresh_token"), row.refresh_token_encrypted)
            access = secrets.get((row.name, "access_token"), row.access_token_encrypted)
            grants.append(
                {"b_profile_id": row.profile_id, "b_refresh": refresh, "b_access": access}
            )
        if grants:
            await self._connection.execute(queries.replace_oauth_grant_tokens(), grants)

    async def oauth_grants(self) -> dict[str, GrantSummary]:
        """What may be shown of every grant, by profile name."""
        result = await self._connection.execute(queries.oauth_grants())
        return {row["name"]: _grant_summary(row) for row in result.mappings()}

    # --- the web console's users ---------------------------------------------------------------

    async def console_users(self) -> list[ConsoleUser]:
        """Every person who may sign in to the console, by name."""
        result = await self._connection.execute(queries.console_users())
        return [ConsoleUser(**row) for row in result.mappings()]

    async def console_user(self, name: str) -> ConsoleUser | None:
        """The console user called ``name``, if there is one."""
        result = await self._connection.execute(queries.console_user_by_name(name))
        row = result.mappings().one_or_none()
        return None if row is None else ConsoleUser(**row)

    async def add_console_user(self, *, name: str, role: str, password_hash: str) -> bool:
        """Add a console user; False when the name is taken already."""
        statement = queries.insert_console_user(name=name, role=role, password_hash=password_hash)
        return (await self._connection.execute(statement)).first() is not None

    async def remove_console_user(self, name: str) -> bool:
        """Remove a console user; False when there is none of that name."""
        result = await self._connection.execute(queries.delete_console_user(name))
        return result.first() is not None

    async def record_console_login(self, name: str) -> None:
        """Note that ``name`` has just signed in to the console."""
        await self._connection.execute(queries.record_console_login(name))


_CAP_COLUMNS = ("daily_cap", "daily_recipient_cap", "per_minute_cap")


def _grant_summary(row: Mapping[str, Any]) -> GrantSummary:
    values = {key: value for key, value in row.items() if key != "name"}
    return GrantSummary(profile=row["name"], **values)


class _ClaimedReader:
    """Rows of :func:`worker.queries.claim_due` (or ``select_claimed``) as :class:`Claimed`:
    the message's columns, and its profile's under :data:`worker.queries.CLAIMED_PROFILE_PREFIX`.

    The columns are sorted out once per result, not once per row. A row whose profile
    columns hold the same values as the row before it reuses that row's :class:`Profile`:
    a busy worker's claim is often 32 rows of one profile, all read in one snapshot.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        prefix = queries.CLAIMED_PROFILE_PREFIX
        self._profile_columns = [
            (index, key.removeprefix(prefix))
            for index, key in enumerate(keys)
            if key.startswith(prefix)
        ]
        self._message_columns = [
            (index, key) for index, key in enumerate(keys) if key in _CLAIMED_FIELDS
        ]
        # The last profile built: its column values, and the object.
        self._last: tuple[list[Any], Profile] | None = None

    def read(self, row: Sequence[Any]) -> Claimed:
        values = [row[index] for index, _ in self._profile_columns]
        if self._last is not None and self._last[0] == values:
            profile = self._last[1]
        else:
            names = [name for _, name in self._profile_columns]
            profile = Profile.from_row(dict(zip(names, values, strict=True)))
            self._last = (values, profile)
        message = {name: row[index] for index, name in self._message_columns}
        return Claimed(profile=profile, **message)


_CLAIMED_FIELDS = frozenset(field.name for field in dataclasses.fields(Claimed)) - {"profile"}


def _filter_arguments(selection: MessageFilter) -> dict[str, Any]:
    """A filter as the message queries take it: the recipient as its lower-cased forms."""
    recipient = selection.recipient
    return {
        "statuses": list(selection.statuses),
        "profile_name": selection.profile,
        "kind": selection.kind,
        "since": selection.since,
        "recipient_forms": [] if recipient is None else address_forms(recipient),
    }


def _message_status(row: Mapping[Any, Any]) -> MessageStatus:
    """A row of :func:`worker.queries.message_status`: the message's columns, and its latest
    attempt's under :data:`worker.queries.STATUS_ATTEMPT_PREFIX` (all null: none yet)."""
    prefix = queries.STATUS_ATTEMPT_PREFIX
    attempt = {field.name: row[prefix + field.name] for field in dataclasses.fields(AttemptSummary)}
    own = {key: row[key] for key in _STATUS_FIELDS}
    latest = None if attempt["attempt_no"] is None else AttemptSummary(**attempt)
    return MessageStatus(**own, latest_attempt=latest)


_STATUS_FIELDS = frozenset(f.name for f in dataclasses.fields(MessageStatus)) - {"latest_attempt"}


def _result_arrays(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    """Parameters of :func:`worker.queries.record_results`: one array per field."""
    rows = [_result_values(outcome) for outcome in outcomes]
    return {f"r_{name}": [row[name] for row in rows] for name in queries.RESULT_FIELDS}


def _result_values(outcome: Outcome) -> dict[str, Any]:
    """One result's values, by field of :data:`worker.queries.RESULT_FIELDS`."""
    return {
        "id": outcome.message_id,
        "attempt_no": outcome.attempt_no,
        "worker": outcome.worker,
        "force": outcome.force,
        "status": outcome.status,
        "status_reason": outcome.status_reason,
        "uncount": 1 if outcome.uncount_attempt else 0,
        "next_attempt_at": outcome.next_attempt_at,
        "last_error": outcome.last_error,
        "smtp_response": outcome.smtp_response,
        "sent_at": outcome.sent_at,
        "profile": outcome.profile,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "outcome": outcome.attempt_outcome,
        "smtp_code": outcome.smtp_code,
        "smtp_text": outcome.smtp_text,
        "tls_version": outcome.tls_version,
        "error": outcome.error,
        "recipients": dict(outcome.recipients),
    }


def _profile_change(outcome: Outcome) -> Executable | None:
    """The statement a result makes of its profile: a pause, the end of one, or none."""
    if outcome.pause is not None:
        pause = outcome.pause
        return queries.pause_profile(
            outcome.profile, until=pause.until, reason=pause.reason, hint=pause.hint
        )
    if outcome.resume_profile:
        return queries.resume_profile(outcome.profile)
    return None
