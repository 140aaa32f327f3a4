"""Every SQL statement the service runs, one named builder each.

Only :mod:`worker.repository` calls these. Statements name the declared schema ``mail``; the
engine translates it to the configured one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Insert,
    Integer,
    Select,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    table,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.expression import Executable

from worker.models import (
    CANCELLABLE_STATUSES,
    DECLARED_SCHEMA,
    RETRYABLE_STATUSES,
    attachment,
    attempt,
    console_user,
    lease_clock,
    oauth_grant,
    outbox,
    profile,
)
from worker.sentences import N_

__all__ = [
    "CLAIMED_MESSAGE_COLUMNS",
    "CLAIMED_PROFILE_PREFIX",
    "RESULT_FIELDS",
    "STATUS_ATTEMPT_PREFIX",
    "any_capped_profile",
    "attachment_sizes",
    "attempt_history",
    "cancel_pending",
    "cancel_pending_message",
    "cap_usage",
    "claim_due",
    "clear_default_profile",
    "console_user_by_name",
    "console_users",
    "count_messages",
    "count_pending",
    "count_purgeable",
    "count_waiting_messages",
    "database_time",
    "defer_for_cap",
    "delete_console_user",
    "delete_profile",
    "ensure_oauth_grant",
    "explain_waiting",
    "fail_expired",
    "fail_unroutable",
    "failures_by_reason",
    "insert_attachments",
    "insert_console_user",
    "insert_message",
    "insert_profile",
    "lock_capped_profiles",
    "lock_oauth_credentials",
    "lock_oauth_grant_tokens",
    "lock_password_tokens",
    "message_id_by_idempotency_key",
    "message_status",
    "metrics_profiles",
    "next_scheduled",
    "nth_oldest_send",
    "oauth_grants",
    "pause_profile",
    "ping",
    "profile_exists",
    "profile_overview",
    "purge_batch",
    "queue_depth",
    "reclaim_lost_leases",
    "record_console_login",
    "record_results",
    "record_results_once",
    "release_claimed",
    "release_waiting_messages",
    "renew_leases",
    "replace_oauth_credential",
    "replace_oauth_grant_tokens",
    "replace_password_token",
    "requeue_failed",
    "requeue_messages",
    "resume_profile",
    "schema_revision",
    "search_messages",
    "select_attachments",
    "select_claimed",
    "select_default_profile",
    "select_message",
    "select_oauth_grant",
    "select_profile_by_name",
    "select_profiles",
    "set_aside",
    "set_default_profile",
    "store_oauth_grant",
    "unheld_claims",
    "update_profile",
    "wake_workers",
    "watch_server",
    "work_due_within",
]


# --- profiles --------------------------------------------------------------------------------


# alembic's own table: the schema version the migrations left.
_alembic_version = table("alembic_version", column("version_num"), schema=DECLARED_SCHEMA)


def schema_revision() -> Select[Any]:
    """The schema version of the database (alembic's ``version_num``)."""
    return select(_alembic_version.c.version_num)


def select_profiles() -> Select[Any]:
    """All profiles, by account name."""
    return select(profile).order_by(profile.c.name)


def select_profile_by_name(name: str) -> Select[Any]:
    """The profile with this account name."""
    return select(profile).where(profile.c.name == name)


def select_default_profile() -> Select[Any]:
    """The profile marked as default, if any."""
    return select(profile).where(profile.c.is_default)


def profile_exists(name: str) -> Select[Any]:
    """Whether a profile with this account name exists."""
    return select(exists().where(profile.c.name == name))


def insert_profile(values: Mapping[str, Any]) -> Executable:
    """A new profile; returns its id."""
    return insert(profile).values(**values).returning(profile.c.id)


def update_profile(name: str, values: Mapping[str, Any]) -> Executable:
    """Change some fields of a profile; returns its id (no row: no such profile).

    A changed profile is also un-paused: the person has just fixed it, so it probes at once.
    """
    return (
        update(profile)
        .where(profile.c.name == name)
        .values(
            **values,
            updated_at=func.now(),
            paused_until=None,
            pause_reason=None,
            pause_hint=None,
            pause_count=0,
        )
        .returning(profile.c.id)
    )


def release_waiting_messages(name: str) -> Update:
    """A profile was just edited: its messages waiting for a pause or a retry are due now.

    ``not_before`` still holds. A message waiting for a cap's room is looked at again, and
    waits again if the cap is still full.
    """
    return (
        update(outbox)
        .where(
            outbox.c.profile == name,
            outbox.c.status == "pending",
            outbox.c.next_attempt_at > func.now(),
        )
        .values(
            next_attempt_at=func.greatest(func.now(), outbox.c.not_before),
            status_reason=_PROFILE_EDITED,
        )
    )


_PROFILE_EDITED = N_("queued: the profile was edited")


def delete_profile(name: str) -> Executable:
    """Remove a profile; returns its id (no row: no such profile)."""
    return delete(profile).where(profile.c.name == name).returning(profile.c.id)


def clear_default_profile() -> Update:
    """No profile is the default any more."""
    return update(profile).where(profile.c.is_default).values(is_default=False)


def set_default_profile(name: str) -> Executable:
    """Make this profile the default; returns its id (no row: no such profile)."""
    return (
        update(profile)
        .where(profile.c.name == name)
        .values(is_default=True, updated_at=func.now())
        .returning(profile.c.id)
    )


def count_waiting_messages(name: str, *, include_unassigned: bool) -> Select[Any]:
    """How many unsent messages name this profile (and, if asked, name no profile)."""
    routed_here = outbox.c.profile == name
    if include_unassigned:
        routed_here = routed_here | outbox.c.profile.is_(None)
    return (
        select(func.count())
        .select_from(outbox)
        .where(outbox.c.status.in_(("pending", "sending")), routed_here)
    )


# --- outbox ----------------------------------------------------------------------------------


@functools.cache  # built once per column set: producers enqueue at high rates
def insert_message(columns: tuple[str, ...]) -> Executable:
    """A new outbox row setting ``columns`` (bound by name); returns its id, or no row when
    its idempotency key is taken."""
    return (
        pg_insert(outbox)
        .values({name: bindparam(name, type_=outbox.c[name].type) for name in columns})
        .on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
        .returning(outbox.c.id)
    )


def message_id_by_idempotency_key(key: str) -> Select[Any]:
    """The id of the message enqueued earlier with this idempotency key."""
    return select(outbox.c.id).where(outbox.c.idempotency_key == key)


def insert_attachments() -> Insert:
    """Attachments of one message (executed with a list of rows)."""
    return insert(attachment)


# --- delivery --------------------------------------------------------------------------------

# The profile columns that come back with each claimed message, prefixed to avoid clashes.
CLAIMED_PROFILE_PREFIX = "profile_"


@functools.cache
def claim_due() -> Update:
    """Claim due messages, fairly across profiles; returns each with its profile's settings.

    Per usable profile (enabled, not paused) the oldest, highest-priority due rows are locked
    with SKIP LOCKED, so concurrent workers never take the same row and a backlog on one
    profile cannot hold back another: every profile gets its share of every claim. A profile
    just out of a pause gets one message, the probe. ``cap_room`` (JSON: profile name to
    messages) limits capped profiles to what their caps still allow (see
    :func:`lock_capped_profiles`). Without ``include_capped`` capped profiles are left out:
    the claim then needs no caps locked first and runs as a statement on its own.

    Parameters: ``worker``, ``lease_seconds``, ``free_slots``, ``per_connection``,
    ``cap_room``, ``include_capped``. Built once: a busy worker claims many times a second,
    and building this statement cost more than running it.
    """
    free_slots = bindparam("free_slots", type_=Integer)
    candidate = profile.alias("candidate")
    # What a capped profile may still send; the others are not limited by it.
    room = func.coalesce(
        cast(bindparam("cap_room", type_=JSONB).op("->>")(candidate.c.name), Integer),
        free_slots,
    )
    share = case(
        (candidate.c.pause_count > 0, func.least(1, room)),
        else_=func.least(
            free_slots,
            candidate.c.max_connections * bindparam("per_connection", type_=Integer),
            room,
        ),
    )
    due = (
        select(outbox.c.id)
        .where(
            outbox.c.status == "pending",
            outbox.c.profile == candidate.c.name,
            outbox.c.next_attempt_at <= func.now(),
            or_(outbox.c.expires_at.is_(None), outbox.c.expires_at > func.now()),
        )
        .order_by(outbox.c.priority.desc(), outbox.c.id)
        .limit(share)
        .with_for_update(skip_locked=True)
        .lateral("due")
    )
    # Each picked row's attachment size, summed here once: RETURNING uses it three times.
    # MATERIALIZED: pulled up into the UPDATE, the sum would be computed at each use.
    picked = (
        select(due.c.id, _attachment_bytes(due.c.id).label("attachment_bytes"))
        .select_from(candidate)
        .join(due, true())
        .where(
            candidate.c.enabled,
            or_(candidate.c.paused_until.is_(None), candidate.c.paused_until <= func.now()),
            or_(bindparam("include_capped", type_=Boolean), ~_has_cap(candidate)),
        )
        .cte("picked")
        .prefix_with("MATERIALIZED")
    )
    domain = func.split_part(profile.c.from_address, "@", 2)
    new_message_id = func.format("<%s@%s>", func.gen_random_uuid(), domain)
    return (
        update(outbox)
        .where(outbox.c.id == picked.c.id, profile.c.name == outbox.c.profile)
        .values(
            status="sending",
            status_reason=N_("sending"),
            attempts=outbox.c.attempts + 1,
            claimed_by=bindparam("worker", type_=Text),
            claimed_at=func.now(),
            lease_expires_at=func.now() + _seconds(bindparam("lease_seconds", type_=Float)),
            message_id=func.coalesce(outbox.c.message_id, new_message_id),
        )
        .returning(*_claimed_columns(picked.c.attachment_bytes))
    )


def _attachment_bytes(outbox_id: Any) -> Any:
    """The size of a message's attachments as stored (0: none)."""
    return (
        select(func.coalesce(func.sum(func.octet_length(attachment.c.content)), 0))
        .where(attachment.c.outbox_id == outbox_id)
        .scalar_subquery()
    )


def _claimed_columns(attachment_bytes: Any) -> list[Any]:
    """What a claim returns of each row: the message, its size, its profile's settings.

    A message larger than ``:max_message_bytes`` (body and attachments, as enqueue measures
    it) comes back without its bodies: the worker fails it for its size, and never loads it.
    ``octet_length`` reads a stored value's length without fetching the value itself.
    ``attachment_bytes`` is the size of the row's attachments, as the statement has it.
    """
    message_bytes = (
        func.octet_length(outbox.c.body_text)
        + func.coalesce(func.octet_length(outbox.c.body_html), 0)
        + attachment_bytes
    )
    too_large = message_bytes > bindparam("max_message_bytes", type_=BigInteger)
    bodies = {
        "body_text": case((too_large, ""), else_=outbox.c.body_text),
        "body_html": case((too_large, None), else_=outbox.c.body_html),
    }
    return [
        *[bodies.get(name, outbox.c[name]).label(name) for name in CLAIMED_MESSAGE_COLUMNS],
        attachment_bytes.label("attachment_bytes"),
        message_bytes.label("message_bytes"),
        *[column.label(CLAIMED_PROFILE_PREFIX + column.name) for column in profile.c],
    ]


CLAIMED_MESSAGE_COLUMNS = (
    "id", "profile", "to_addrs", "cc_addrs", "bcc_addrs", "subject", "body_text", "body_html",
    "headers", "priority", "expires_at", "kind", "attempts", "message_id", "created_at",
    "claimed_at",
)  # fmt: skip


@functools.cache
def select_claimed() -> Select[Any]:
    """One row this worker claimed, as :func:`claim_due` returns it (``:id``, ``:worker``,
    ``:max_message_bytes``): a row of a claim that failed is read again alone."""
    return (
        select(*_claimed_columns(_attachment_bytes(outbox.c.id)))
        .select_from(outbox.join(profile, profile.c.name == outbox.c.profile))
        .where(
            outbox.c.id == bindparam("id", type_=BigInteger),
            outbox.c.status == "sending",
            outbox.c.claimed_by == bindparam("worker", type_=Text),
        )
    )


def unheld_claims(*, worker: str, held: list[int]) -> Select[Any]:
    """Rows claimed by ``worker`` that it does not hold: those of a claim it could not read."""
    return (
        select(outbox.c.id)
        .where(
            outbox.c.status == "sending",
            outbox.c.claimed_by == worker,
            outbox.c.id.not_in(held),
        )
        .order_by(outbox.c.id)
    )


def set_aside(*, outbox_id: int, worker: str, reason: str) -> Executable:
    """Fail a claimed row that the worker cannot handle, with the reason and an attempt record.

    Written in SQL alone: the row may hold a value that the worker cannot read.
    """
    aside = (
        update(outbox)
        .where(
            outbox.c.id == outbox_id,
            outbox.c.status == "sending",
            outbox.c.claimed_by == worker,
        )
        .values(
            status="failed",
            status_reason=N_("failed: %(reason)s") % {"reason": reason},
            last_error=reason,
            claimed_by=None,
            lease_expires_at=None,
        )
        .returning(outbox.c.id, outbox.c.attempts, outbox.c.profile, outbox.c.claimed_at)
        .cte("aside")
    )
    return insert(attempt).from_select(
        ["outbox_id", "attempt_no", "profile", "worker_id", "started_at", "finished_at",
         "outcome", "error"],
        select(
            aside.c.id, aside.c.attempts, aside.c.profile, literal(worker),
            func.coalesce(aside.c.claimed_at, func.now()), func.now(), literal("failed"),
            literal(reason),
        ),
    )  # fmt: skip


def select_attachments(outbox_id: int) -> Select[Any]:
    """A message's attachments, in the order they were inserted."""
    return (
        select(attachment.c.filename, attachment.c.content_type, attachment.c.content)
        .where(attachment.c.outbox_id == outbox_id)
        .order_by(attachment.c.id)
    )


def renew_leases(*, worker: str, lease_seconds: float, held: list[int]) -> Update:
    """Extend the leases of the rows ``held`` that this worker is still sending.

    Only those: a worker that was restarted under the same name must not keep alive the rows
    its previous run left behind.
    """
    return (
        update(outbox)
        .where(
            outbox.c.id.in_(held),
            outbox.c.status == "sending",
            outbox.c.claimed_by == worker,
        )
        .values(lease_expires_at=func.now() + _seconds(lease_seconds))
    )


# A result batch's values: one array per field, one element per result, in the same order;
# each of the type of the column it is written to.
_RESULT_TYPES = {
    "id": outbox.c.id.type,
    "attempt_no": attempt.c.attempt_no.type,
    "worker": outbox.c.claimed_by.type,
    "force": Boolean(),  # a final result: recorded on a row nobody claimed since its lease ran out
    "status": outbox.c.status.type,
    "status_reason": outbox.c.status_reason.type,
    "uncount": Integer(),  # 1: the attempt does not count (a pause, an interruption)
    "next_attempt_at": outbox.c.next_attempt_at.type,
    "last_error": outbox.c.last_error.type,
    "smtp_response": outbox.c.smtp_response.type,
    "sent_at": outbox.c.sent_at.type,
    "profile": attempt.c.profile.type,
    "started_at": attempt.c.started_at.type,
    "finished_at": attempt.c.finished_at.type,
    "outcome": attempt.c.outcome.type,
    "smtp_code": attempt.c.smtp_code.type,
    "smtp_text": attempt.c.smtp_text.type,
    "tls_version": attempt.c.tls_version.type,
    "error": attempt.c.error.type,
    "recipients": attempt.c.recipients.type,
}
RESULT_FIELDS = tuple(_RESULT_TYPES)


@functools.cache  # built once: runs with every result batch
def record_results() -> Insert:
    """Record a batch of attempt results in one statement: each message's new state and its
    attempt record. Parameters: ``r_<field>`` for each of :data:`RESULT_FIELDS`, an array
    with one element per result.

    The row's update is fenced by the claim the result belongs to: the row must still be
    the same attempt (``attempts = attempt_no``) held by the same worker. A result whose
    lease was lost never moves a row that another worker claimed since. A final result
    (``force``: a delivery, a permanent failure) is also recorded on a row whose lease ran
    out but that nobody claimed again, so a message that was delivered is not sent twice.
    The attempt record is stored in every case.
    """
    return _record_results(once=False)


@functools.cache
def record_results_once() -> Insert:
    """:func:`record_results` for results replayed from a journal, which may have been
    written before the worker died: an attempt record already stored (or of a message no
    longer there) is not stored again."""
    return _record_results(once=True)


def _record_results(*, once: bool) -> Insert:
    arrays = [bindparam(f"r_{name}", type_=ARRAY(kind)) for name, kind in _RESULT_TYPES.items()]
    unnested = (
        func.unnest(*arrays)
        .table_valued(*[column(name, kind) for name, kind in _RESULT_TYPES.items()])
        .render_derived(with_types=False)
    )
    batch = select(unnested).cte("batch")
    finished = (
        update(outbox)
        .where(
            outbox.c.id == batch.c.id,
            outbox.c.attempts == batch.c.attempt_no,
            or_(
                and_(outbox.c.status == "sending", outbox.c.claimed_by == batch.c.worker),
                and_(batch.c.force, outbox.c.status != "sending"),
            ),
        )
        .values(
            status=batch.c.status,
            status_reason=batch.c.status_reason,
            attempts=outbox.c.attempts - batch.c.uncount,
            next_attempt_at=func.coalesce(batch.c.next_attempt_at, outbox.c.next_attempt_at),
            last_error=batch.c.last_error,
            smtp_response=func.coalesce(batch.c.smtp_response, outbox.c.smtp_response),
            sent_at=batch.c.sent_at,
            claimed_by=None,
            lease_expires_at=None,
        )
        .cte("finished")
    )
    records = select(
        batch.c.id, batch.c.attempt_no, batch.c.profile, batch.c.worker, batch.c.started_at,
        batch.c.finished_at, batch.c.outcome, batch.c.smtp_code, batch.c.smtp_text,
        batch.c.tls_version, batch.c.error, batch.c.recipients,
    )  # fmt: skip
    if once:
        stored = exists().where(
            attempt.c.outbox_id == batch.c.id,
            attempt.c.attempt_no == batch.c.attempt_no,
            attempt.c.worker_id == batch.c.worker,
            attempt.c.started_at == batch.c.started_at,
        )
        records = records.where(~stored, exists().where(outbox.c.id == batch.c.id))
    return insert(attempt).from_select(list(_ATTEMPT_COLUMNS), records).add_cte(finished)


_ATTEMPT_COLUMNS = (
    "outbox_id", "attempt_no", "profile", "worker_id", "started_at", "finished_at", "outcome",
    "smtp_code", "smtp_text", "tls_version", "error", "recipients",
)  # fmt: skip


def pause_profile(name: str, *, until: datetime, reason: str, hint: str | None) -> Update:
    """Pause a profile: its messages wait until ``until`` without spending attempts."""
    return (
        update(profile)
        .where(profile.c.name == name)
        .values(
            paused_until=until,
            pause_reason=reason,
            pause_hint=hint,
            pause_count=profile.c.pause_count + 1,
        )
    )


def resume_profile(name: str) -> Update:
    """A paused profile worked again: clear its pause."""
    return (
        update(profile)
        .where(profile.c.name == name, profile.c.pause_count > 0)
        .values(paused_until=None, pause_reason=None, pause_hint=None, pause_count=0)
    )


def watch_server() -> Executable:
    """Note the database server in ``lease_clock``; a new one restarts its ``up_since``.

    Another ``pg_postmaster_start_time()`` than the one noted means the server restarted or
    a replica took over (its own start time differs, though it has been running for long).
    Writes nothing while the server stays the same.
    """
    started = func.pg_postmaster_start_time()
    return (
        pg_insert(lease_clock)
        .values(id=True, server_started=started, up_since=func.now())
        .on_conflict_do_update(
            index_elements=[lease_clock.c.id],
            set_={"server_started": started, "up_since": func.now()},
            where=lease_clock.c.server_started.is_distinct_from(started),
        )
    )


def reclaim_lost_leases(*, max_attempts: int, lease_seconds: float) -> Executable:
    """Rows whose worker died become due again, and their attempt is recorded as interrupted.

    A row interrupted ``max_attempts`` times is failed: a message that kills its worker must
    not loop forever. Nothing is reclaimed until the server has been up for
    ``lease_seconds`` (``lease_clock``, kept by :func:`watch_server`): no worker could renew
    while it was down or failing over, so right after that an expired lease says nothing
    about its worker, which may be alive and sending.
    """
    up_long_enough = exists().where(lease_clock.c.up_since < func.now() - _seconds(lease_seconds))
    expired = (
        select(outbox.c.id, outbox.c.claimed_by, outbox.c.claimed_at)
        .where(
            outbox.c.status == "sending",
            outbox.c.lease_expires_at < func.now(),
            up_long_enough,
        )
        .with_for_update(skip_locked=True)
        .cte("expired")
    )
    gave_up = outbox.c.attempts >= max_attempts
    # The expired rows are read first: RETURNING would give claimed_by after the update.
    lost = (
        update(outbox)
        .where(outbox.c.id == expired.c.id)
        .values(
            status=case((gave_up, "failed"), else_="pending"),
            status_reason=case(
                (gave_up, N_("failed: its worker stopped during every attempt")),
                else_=N_("waiting to retry: the worker sending it stopped (lease expired)"),
            ),
            next_attempt_at=func.now(),
            claimed_by=None,
            lease_expires_at=None,
        )
        .returning(
            outbox.c.id, outbox.c.attempts, outbox.c.profile, expired.c.claimed_by,
            expired.c.claimed_at,
        )
        .cte("lost")
    )  # fmt: skip
    return insert(attempt).from_select(
        ["outbox_id", "attempt_no", "profile", "worker_id", "started_at", "finished_at",
         "outcome", "error"],
        select(
            lost.c.id, lost.c.attempts, lost.c.profile, lost.c.claimed_by,
            func.coalesce(lost.c.claimed_at, func.now()), func.now(), literal("interrupted"),
            literal(N_("the worker stopped before the result was recorded (lease expired)")),
        ),
    )  # fmt: skip


def fail_expired() -> Update:
    """Pending messages past their ``expires_at`` are failed, never sent."""
    return (
        update(outbox)
        .where(outbox.c.status == "pending", outbox.c.expires_at <= func.now())
        .values(status="failed", status_reason=N_("expired: not sent before expires_at"))
    )


def fail_unroutable() -> Update:
    """Pending messages with no usable profile name are failed with the reason in words."""
    known = exists().where(profile.c.name == outbox.c.profile)
    return (
        update(outbox)
        .where(outbox.c.status == "pending", or_(outbox.c.profile.is_(None), ~known))
        .values(
            status="failed",
            status_reason=case(
                (outbox.c.profile.is_(None), N_("no profile given and no default profile exists")),
                # The words of N_("profile %(profile)s does not exist") (message_status).
                else_=func.format("profile %s does not exist", outbox.c.profile),
            ),
        )
    )


def explain_waiting() -> Update:
    """Pending messages of a disabled or paused profile say so in ``status_reason``.

    The words are those of :func:`worker.outcomes.paused_reason` and of N_("waiting: %(why)s")
    with N_("profile %(profile)s is disabled"), so they translate alike.
    """
    reason = case(
        (~profile.c.enabled, func.format("waiting: profile %s is disabled", profile.c.name)),
        else_=func.format(
            "waiting: profile %s paused until %s: %s%s",
            profile.c.name,
            func.to_char(
                func.timezone("UTC", profile.c.paused_until), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
            ),
            profile.c.pause_reason,
            func.coalesce(" (hint: " + profile.c.pause_hint + ")", ""),
        ),
    )
    return (
        update(outbox)
        .where(
            outbox.c.status == "pending",
            outbox.c.profile == profile.c.name,
            or_(~profile.c.enabled, profile.c.paused_until > func.now()),
            outbox.c.status_reason.is_distinct_from(reason),
        )
        .values(status_reason=reason)
    )


def _seconds(value: Any) -> Any:
    """``value`` seconds (a number or a bound parameter) as an interval."""
    return func.make_interval(0, 0, 0, 0, 0, 0, value)


def count_pending() -> Select[Any]:
    """How many messages wait to be sent (due or not), from the pending rows' index."""
    return select(func.count()).select_from(outbox).where(outbox.c.status == "pending")


def work_due_within(seconds: float) -> Select[Any]:
    """Whether any message of a usable profile becomes due within ``seconds``."""
    return select(
        exists().where(
            outbox.c.status == "pending",
            outbox.c.next_attempt_at <= func.now() + _seconds(seconds),
            profile.c.name == outbox.c.profile,
            profile.c.enabled,
            or_(
                profile.c.paused_until.is_(None),
                profile.c.paused_until <= func.now() + _seconds(seconds),
            ),
        )
    )


def next_scheduled() -> Select[Any]:
    """The earliest future moment a waiting message becomes due or a pause ends (NULL: none).

    An idle worker whose LISTEN is connected sleeps until then (new rows wake it anyway).
    """
    message_due = (
        select(func.min(outbox.c.next_attempt_at))
        .where(outbox.c.status == "pending", outbox.c.next_attempt_at > func.now())
        .scalar_subquery()
    )
    pause_ends = (
        select(func.min(profile.c.paused_until))
        .where(profile.c.paused_until > func.now())
        .scalar_subquery()
    )
    return select(func.least(message_due, pause_ends))


# --- caps ------------------------------------------------------------------------------------

# First key of the advisory locks that make claims of one capped profile take turns.
_CAP_LOCK_SPACE = 0x6D61696C  # "mail"
_RECIPIENTS = (
    func.cardinality(outbox.c.to_addrs)
    + func.cardinality(outbox.c.cc_addrs)
    + func.cardinality(outbox.c.bcc_addrs)
)


@functools.cache  # built once: runs with every claim or result batch
def lock_capped_profiles() -> Select[Any]:
    """Usable profiles that have a cap, each locked until the end of the transaction.

    Concurrent workers claiming for one capped profile wait for each other here, so each one
    counts the sends of the others before it claims: the cap holds across any number of
    workers. Locks are taken in name order (volatile functions run after ORDER BY).
    """
    return (
        select(
            profile.c.name,
            profile.c.daily_cap,
            profile.c.daily_recipient_cap,
            profile.c.per_minute_cap,
            func.pg_advisory_xact_lock(_CAP_LOCK_SPACE, func.hashtext(profile.c.name)),
        )
        .where(_usable(profile), _has_cap(profile))
        .order_by(profile.c.name)
    )


def any_capped_profile() -> Select[Any]:
    """Whether an enabled profile has a cap (a worker then claims with caps locked)."""
    return select(exists().where(profile.c.enabled, _has_cap(profile)))


def _has_cap(table: Any) -> Any:
    return or_(
        table.c.daily_cap.is_not(None),
        table.c.daily_recipient_cap.is_not(None),
        table.c.per_minute_cap.is_not(None),
    )


def cap_usage(names: list[str]) -> Select[Any]:
    """Per profile: messages and recipients sent in the last 24 h and minute, and in flight.

    Run after :func:`lock_capped_profiles`, in a statement of its own, so its snapshot sees
    every claim committed before the lock was granted.
    """
    day_ago = func.now() - _seconds(86400)
    minute_ago = func.now() - _seconds(60)

    def sent_since(since: Any, measure: Any) -> Any:
        return (
            select(func.coalesce(func.sum(measure), 0))
            .where(outbox.c.profile == profile.c.name, outbox.c.sent_at > since)
            .scalar_subquery()
        )

    in_flight = (
        select(
            func.count().label("messages"),
            func.coalesce(func.sum(_RECIPIENTS), 0).label("recipients"),
        )
        .where(outbox.c.profile == profile.c.name, outbox.c.status == "sending")
        .lateral("in_flight")
    )
    return (
        select(
            profile.c.name,
            sent_since(day_ago, literal(1)).label("day_messages"),
            sent_since(day_ago, _RECIPIENTS).label("day_recipients"),
            sent_since(minute_ago, literal(1)).label("minute_messages"),
            in_flight.c.messages.label("sending_messages"),
            in_flight.c.recipients.label("sending_recipients"),
        )
        .select_from(profile.join(in_flight, true()))
        .where(profile.c.name.in_(names))
    )


def nth_oldest_send(name: str, *, window_seconds: float, offset: int) -> Select[Any]:
    """When the ``offset``-th oldest send (from 0) of the window was made."""
    return (
        select(outbox.c.sent_at)
        .where(
            outbox.c.profile == name,
            outbox.c.sent_at > func.now() - _seconds(window_seconds),
        )
        .order_by(outbox.c.sent_at)
        .offset(offset)
        .limit(1)
    )


def defer_for_cap(name: str, *, until: datetime, reason: str) -> Update:
    """The profile's due messages wait until its cap has room again; returns how many."""
    return (
        update(outbox)
        .where(
            outbox.c.profile == name,
            outbox.c.status == "pending",
            outbox.c.next_attempt_at < until,
        )
        .values(next_attempt_at=until, status_reason=reason)
    )


def release_claimed(ids: list[int], *, reason: str) -> Update:
    """Claimed rows go back to the queue untouched; their attempt does not count."""
    return (
        update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.status == "sending")
        .values(
            status="pending",
            status_reason=reason,
            attempts=outbox.c.attempts - 1,
            claimed_by=None,
            lease_expires_at=None,
        )
    )


def _usable(table: Any) -> Any:
    return and_(
        table.c.enabled,
        or_(table.c.paused_until.is_(None), table.c.paused_until <= func.now()),
    )


# --- metrics ---------------------------------------------------------------------------------


def ping() -> Select[Any]:
    """One round trip: whether the database answers at all."""
    return select(literal(1))


def _wanted_since() -> Any:
    """When a row was first wanted: its enqueueing, or its ``not_before`` if that is later."""
    return func.greatest(outbox.c.created_at, outbox.c.not_before)


def queue_depth() -> Executable:
    """Unsent messages per profile and status (pending, sending), and the oldest one's age.

    ``oldest_age``: seconds since the group's oldest row was first wanted (enqueued, or its
    ``not_before`` if later); negative when none is wanted yet. Each half reads the rows of one
    partial index, so the sent history costs nothing.
    """

    def by_profile(status: str) -> Select[Any]:
        wanted = func.min(_wanted_since())
        return (
            select(
                func.coalesce(outbox.c.profile, "").label("profile"),
                literal(status).label("status"),
                func.count().label("messages"),
                func.date_part("epoch", func.now() - wanted).label("oldest_age"),
            )
            .where(outbox.c.status == status)
            .group_by(outbox.c.profile)
        )

    return by_profile("pending").union_all(by_profile("sending"))


def metrics_profiles() -> Select[Any]:
    """Every profile's caps and, while it is paused, until when and why."""
    paused = profile.c.paused_until > func.now()
    return select(
        profile.c.name,
        profile.c.daily_cap,
        profile.c.daily_recipient_cap,
        profile.c.per_minute_cap,
        case((paused, profile.c.paused_until)).label("paused_until"),
        case((paused, profile.c.pause_reason)).label("pause_reason"),
    ).order_by(profile.c.name)


# --- status ----------------------------------------------------------------------------------

# The columns of a message's latest attempt, returned under STATUS_ATTEMPT_PREFIX.
STATUS_ATTEMPT_PREFIX = "attempt_"
_STATUS_ATTEMPT_COLUMNS = (
    "attempt_no", "outcome", "worker_id", "started_at", "finished_at", "smtp_code", "smtp_text",
    "tls_version", "error",
)  # fmt: skip


def message_status(message_id: int) -> Select[Any]:
    """One message's state with its latest attempt, its attempt count and its profile's pause.

    ``checked_at`` is the database's clock, so callers compare it, not their own, with the
    row's times. No row: no such message.
    """
    latest = (
        select(*[attempt.c[name] for name in _STATUS_ATTEMPT_COLUMNS])
        .where(attempt.c.outbox_id == outbox.c.id)
        .order_by(attempt.c.id.desc())
        .limit(1)
        .lateral("latest")
    )
    recorded = select(func.count()).where(attempt.c.outbox_id == outbox.c.id).scalar_subquery()
    return (
        select(
            outbox.c.id, outbox.c.kind, outbox.c.profile, outbox.c.status, outbox.c.status_reason,
            outbox.c.attempts, outbox.c.next_attempt_at, outbox.c.last_error,
            outbox.c.smtp_response, outbox.c.sent_at, outbox.c.claimed_by, outbox.c.claimed_at,
            outbox.c.created_at.label("queued_at"),
            recorded.label("recorded_attempts"),
            func.now().label("checked_at"),
            *[
                latest.c[name].label(STATUS_ATTEMPT_PREFIX + name)
                for name in _STATUS_ATTEMPT_COLUMNS
            ],
            profile.c.enabled.label("profile_enabled"),
            profile.c.paused_until.label("profile_paused_until"),
            profile.c.pause_reason.label("profile_pause_reason"),
            profile.c.pause_hint.label("profile_pause_hint"),
        )
        .select_from(
            outbox.outerjoin(latest, true()).outerjoin(profile, profile.c.name == outbox.c.profile)
        )
        .where(outbox.c.id == message_id)
    )  # fmt: skip


def cancel_pending_message(message_id: int, *, reason: str) -> Executable:
    """Withdraw a message that is still pending; returns its id (no row: too late or unknown)."""
    return (
        update(outbox)
        .where(outbox.c.id == message_id, outbox.c.status == "pending")
        .values(status="cancelled", status_reason=reason)
        .returning(outbox.c.id)
    )


# --- operations ------------------------------------------------------------------------------

# Failed and cancelled rows carry no time of their own; the latest of these stands in for when
# such a row finished: the end of its last attempt, its expiry (expired rows), its enqueueing.
# A sent row finished at sent_at (its last attempt ended then), so its attempts are not read.
_EXPIRED_REASON_PREFIX = "expired"  # fail_expired's status_reason
_OPERATOR_REQUEUED = N_("queued again by an operator")
_OPERATOR_CANCELLED = N_("cancelled by an operator")
_FINISHED = ("sent", "failed", "cancelled")


def _finished_at() -> Any:
    last_attempt = (
        select(func.max(func.coalesce(attempt.c.finished_at, attempt.c.started_at)))
        .where(attempt.c.outbox_id == outbox.c.id)
        .scalar_subquery()
    )
    expired_at = case(
        (outbox.c.status_reason.startswith(_EXPIRED_REASON_PREFIX), outbox.c.expires_at)
    )
    return case(
        (outbox.c.sent_at.is_not(None), outbox.c.sent_at),
        else_=func.greatest(outbox.c.created_at, last_attempt, expired_at),
    )


def database_time() -> Select[Any]:
    """The database's clock, which every age and cutoff of the operator commands is taken on."""
    return select(func.now())


def profile_overview() -> Select[Any]:
    """Every profile with its queue, its last 24 h and its cap usage (``mailworker status``).

    Pending and sending rows are read through their partial indexes and the sends through
    ``ix_outbox_sent``; the failures of the last 24 h take one pass over the failed rows.
    ``cap_frees_at``: when the send whose ageing-out gives the daily cap room again turns 24 h
    old (the oldest send, or a later one if the profile sent more than its cap).
    """
    day_ago = func.now() - _seconds(86400)
    pending = (
        select(
            func.count().label("pending"),
            func.min(outbox.c.created_at).label("oldest_pending_at"),
        )
        .where(outbox.c.profile == profile.c.name, outbox.c.status == "pending")
        .lateral("pending")
    )
    sending = (
        select(
            func.count().label("sending"),
            func.coalesce(func.sum(_RECIPIENTS), 0).label("sending_recipients"),
        )
        .where(outbox.c.profile == profile.c.name, outbox.c.status == "sending")
        .lateral("sending")
    )
    sent = (
        select(
            func.count().label("sent_24h"),
            func.coalesce(func.sum(_RECIPIENTS), 0).label("recipients_24h"),
            func.count()
            .filter(outbox.c.sent_at > func.now() - _seconds(60))
            .label("sent_last_minute"),
        )
        .where(outbox.c.profile == profile.c.name, outbox.c.sent_at > day_ago)
        .lateral("sent")
    )
    over_cap = func.greatest(sent.c.sent_24h - func.coalesce(profile.c.daily_cap, 0), 0)
    frees = (
        select((outbox.c.sent_at + _seconds(86400)).label("cap_frees_at"))
        .where(outbox.c.profile == profile.c.name, outbox.c.sent_at > day_ago)
        .order_by(outbox.c.sent_at)
        .offset(case((profile.c.daily_cap.is_(None), 0), else_=over_cap))
        .limit(1)
        .lateral("frees")
    )
    failed = (
        select(outbox.c.profile, func.count().label("failed_24h"))
        .where(outbox.c.status == "failed", _finished_at() > day_ago)
        .group_by(outbox.c.profile)
        .subquery("failed")
    )
    return (
        select(
            profile.c.name,
            profile.c.is_default,
            profile.c.enabled,
            profile.c.paused_until,
            profile.c.pause_reason,
            profile.c.pause_hint,
            profile.c.daily_cap,
            profile.c.daily_recipient_cap,
            profile.c.per_minute_cap,
            pending.c.pending,
            pending.c.oldest_pending_at,
            sending.c.sending,
            sending.c.sending_recipients,
            sent.c.sent_24h,
            sent.c.recipients_24h,
            sent.c.sent_last_minute,
            func.coalesce(failed.c.failed_24h, 0).label("failed_24h"),
            frees.c.cap_frees_at,
            func.now().label("checked_at"),
        )
        .select_from(
            profile.join(pending, true())
            .join(sending, true())
            .join(sent, true())
            .outerjoin(frees, true())
            .outerjoin(failed, failed.c.profile == profile.c.name)
        )
        .order_by(profile.c.name)
    )


def failures_by_reason() -> Select[Any]:
    """Messages failed in the last 24 h by profile and reason, most first (``status``).

    ``profile_exists`` is false for the unroutable: no profile named, or one that does not
    exist; those belong to no row of :func:`profile_overview`.
    """
    day_ago = func.now() - _seconds(86400)
    exists_ = exists().where(profile.c.name == outbox.c.profile)
    count = func.count().label("messages")
    return (
        select(
            outbox.c.profile,
            exists_.label("profile_exists"),
            func.coalesce(outbox.c.status_reason, "").label("reason"),
            count,
        )
        .where(outbox.c.status == "failed", _finished_at() > day_ago)
        .group_by(outbox.c.profile, exists_, outbox.c.status_reason)
        .order_by(count.desc(), outbox.c.profile)
    )


def messages_by_status() -> Executable:
    """Statuses with their counts: the rows waiting or being sent now, and those that were
    sent, failed or cancelled in the last 24 h (the console's overview); a count of none may
    have no row.

    The unsent rows are read through their partial indexes and the sends through
    ``ix_outbox_sent`` (a sent_at belongs to sent rows only); the failed and cancelled rows
    take one pass, as :func:`failures_by_reason` does.
    """
    day_ago = func.now() - _seconds(86400)
    messages = func.count().label("messages")

    def unsent(status: str) -> Select[Any]:
        named: Any = literal(status).label("status")
        return select(named, messages).where(outbox.c.status == status)

    sent: Any = literal("sent").label("status")
    return union_all(
        unsent("pending"),
        unsent("sending"),
        select(sent, messages).where(outbox.c.sent_at > day_ago),
        select(outbox.c.status, messages)
        .where(outbox.c.status.in_(("failed", "cancelled")), _finished_at() > day_ago)
        .group_by(outbox.c.status),
    )


def pending_by_profile() -> Select[Any]:
    """Per profile named by pending rows: how many are due now, since when the oldest of them
    is wanted, and how many wait for a later moment (a retry, ``not_before``, a full cap)."""
    due = outbox.c.next_attempt_at <= func.now()
    return (
        select(
            outbox.c.profile,
            func.count().filter(due).label("due"),
            func.min(_wanted_since()).filter(due).label("oldest_due_at"),
            func.count().filter(~due).label("later"),
            func.now().label("checked_at"),
        )
        .where(outbox.c.status == "pending")
        .group_by(outbox.c.profile)
    )


def _bare_address(entry: Any) -> Any:
    """``Jan Kowalski <jan@example.pl>`` → ``jan@example.pl``; a bare address as it is."""
    return func.coalesce(func.substring(entry, r"<([^<>]*)>\s*$"), func.btrim(entry))


def _message_conditions(
    *,
    statuses: list[str],
    profile_name: str | None,
    kind: str | None,
    since: datetime | None,
    recipient_forms: Sequence[str],
) -> list[Any]:
    """The WHERE of :func:`search_messages` and :func:`count_messages`: every filter given."""
    conditions: list[Any] = []
    if statuses:
        conditions.append(outbox.c.status.in_(statuses))
    if profile_name is not None:
        conditions.append(outbox.c.profile == profile_name)
    if kind is not None:
        conditions.append(outbox.c.kind == kind)
    if since is not None:
        conditions.append(outbox.c.created_at >= since)
    if recipient_forms:
        addresses = (
            func.unnest(outbox.c.to_addrs.op("||")(outbox.c.cc_addrs).op("||")(outbox.c.bcc_addrs))
            .table_valued("address")
            .render_derived(name="addresses")
        )
        conditions.append(
            exists(
                select(literal(1))
                .select_from(addresses)
                .where(func.lower(_bare_address(addresses.c.address)).in_(recipient_forms))
            )
        )
    return conditions


def search_messages(
    *,
    statuses: list[str],
    profile_name: str | None,
    kind: str | None,
    since: datetime | None,
    recipient_forms: Sequence[str],
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> Select[Any]:
    """Outbox rows matching every given filter, newest first (``messages list``, the console).

    ``recipient_forms``: the lower-cased forms of one address (``addresses.address_forms``);
    a row matches if a recipient, display name and ``<>`` left aside, is one of them.
    Newest first is ``(created_at, id)`` descending; ``after`` (a row's ``(created_at, id)``)
    keeps the rows past it, a keyset page read from ``ix_outbox_created`` (or
    ``ix_outbox_status_created`` with a status filter) however deep it is.
    """
    conditions = _message_conditions(
        statuses=statuses,
        profile_name=profile_name,
        kind=kind,
        since=since,
        recipient_forms=recipient_forms,
    )
    if after is not None:
        conditions.append(tuple_(outbox.c.created_at, outbox.c.id) < tuple_(*after))
    return (
        select(
            outbox.c.id,
            outbox.c.status,
            outbox.c.profile,
            outbox.c.kind,
            outbox.c.priority,
            outbox.c.to_addrs,
            outbox.c.cc_addrs,
            outbox.c.bcc_addrs,
            outbox.c.subject,
            outbox.c.attempts,
            outbox.c.created_at,
            outbox.c.next_attempt_at,
            outbox.c.sent_at,
            outbox.c.status_reason,
        )
        .where(*conditions)
        .order_by(outbox.c.created_at.desc(), outbox.c.id.desc())
        .limit(limit)
    )


def count_messages(
    *,
    statuses: list[str],
    profile_name: str | None,
    kind: str | None,
    since: datetime | None,
    recipient_forms: Sequence[str],
) -> Select[Any]:
    """How many outbox rows :func:`search_messages` selects with these filters, all pages."""
    conditions = _message_conditions(
        statuses=statuses,
        profile_name=profile_name,
        kind=kind,
        since=since,
        recipient_forms=recipient_forms,
    )
    return select(func.count()).select_from(outbox).where(*conditions)


def select_message(outbox_id: int) -> Select[Any]:
    """Every column of one outbox row."""
    return select(outbox).where(outbox.c.id == outbox_id)


def attachment_sizes(outbox_id: int) -> Select[Any]:
    """A message's attachments by name, type and size in bytes; never their content."""
    return (
        select(
            attachment.c.filename,
            attachment.c.content_type,
            func.octet_length(attachment.c.content).label("size"),
        )
        .where(attachment.c.outbox_id == outbox_id)
        .order_by(attachment.c.id)
    )


def attempt_history(outbox_id: int) -> Select[Any]:
    """Every attempt record of a message, oldest first, with its per-recipient results."""
    return select(attempt).where(attempt.c.outbox_id == outbox_id).order_by(attempt.c.id)


def _changed_rows(target: Any, changed: Any) -> Select[Any]:
    """Each locked row of ``target``, its status before, and whether ``changed`` took it."""
    return (
        select(
            target.c.id,
            target.c.status,
            target.c.expires_at,
            changed.c.id.is_not(None).label("changed"),
        )
        .select_from(target.outerjoin(changed, changed.c.id == target.c.id))
        .order_by(target.c.id)
    )


def _requeue(selection: Any) -> Executable:
    target = (
        select(outbox.c.id, outbox.c.status, outbox.c.expires_at)
        .where(selection)
        .with_for_update()
        .cte("target")
    )
    default_profile = select(profile.c.name).where(profile.c.is_default).scalar_subquery()
    queued = (
        update(outbox)
        .where(
            outbox.c.id == target.c.id,
            target.c.status.in_(RETRYABLE_STATUSES),
            or_(target.c.expires_at.is_(None), target.c.expires_at > func.now()),
        )
        .values(
            status="pending",
            status_reason=_OPERATOR_REQUEUED,
            attempts=0,
            next_attempt_at=func.now(),
            claimed_by=None,
            lease_expires_at=None,
            profile=func.coalesce(outbox.c.profile, default_profile),
        )
        .returning(outbox.c.id)
        .cte("queued")
    )
    return _changed_rows(target, queued)


def requeue_messages(ids: list[int]) -> Executable:
    """Failed or cancelled rows among ``ids`` become due now with a fresh attempt count.

    Their attempt history stays. An expired row is left as it is: it would fail again at
    once. Returns every row found among ``ids`` with its status before and ``changed``.
    """
    return _requeue(outbox.c.id.in_(ids))


def requeue_failed(profile_name: str | None) -> Executable:
    """Every failed row (of one profile, if given) becomes due now, as :func:`requeue_messages`."""
    selection = outbox.c.status == "failed"
    if profile_name is not None:
        selection = and_(selection, outbox.c.profile == profile_name)
    return _requeue(selection)


def cancel_pending(ids: list[int]) -> Executable:
    """Pending rows among ``ids`` are cancelled; a row being sent is not (it is on the wire).

    The rows are locked first, so a row a worker claims at this moment is seen as sending.
    Returns every row found among ``ids`` with its status before and ``changed``.
    """
    target = (
        select(outbox.c.id, outbox.c.status, outbox.c.expires_at)
        .where(outbox.c.id.in_(ids))
        .with_for_update()
        .cte("target")
    )
    cancelled = (
        update(outbox)
        .where(outbox.c.id == target.c.id, target.c.status.in_(CANCELLABLE_STATUSES))
        .values(status="cancelled", status_reason=_OPERATOR_CANCELLED)
        .returning(outbox.c.id)
        .cte("cancelled")
    )
    return _changed_rows(target, cancelled)


def wake_workers(channel: str) -> Select[Any]:
    """Wake the listening workers at commit, as the insert trigger does."""
    return select(func.pg_notify(channel, ""))


def _purgeable(statuses: list[str], cutoff: datetime) -> Any:
    finished = [status for status in statuses if status in _FINISHED]  # never pending, sending
    return and_(outbox.c.status.in_(finished), _finished_at() < cutoff)


def count_purgeable(statuses: list[str], cutoff: datetime) -> Select[Any]:
    """How many finished rows of these statuses finished before ``cutoff``."""
    return select(func.count()).select_from(outbox).where(_purgeable(statuses, cutoff))


def purge_batch(statuses: list[str], cutoff: datetime, *, after_id: int, size: int) -> Executable:
    """Delete up to ``size`` finished rows past ``after_id``; returns their ids.

    Rows are taken in id order from ``after_id`` on, so each batch starts where the last one
    ended and kept rows are read once. ``SKIP LOCKED``: a row someone holds is left for the next
    purge instead of being waited for. Pending and sending rows are never taken (only the
    statuses sent, failed and cancelled count); attachments and attempts go by cascade.
    """
    doomed = (
        select(outbox.c.id)
        .where(outbox.c.id > after_id, _purgeable(statuses, cutoff))
        .order_by(outbox.c.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    return delete(outbox).where(outbox.c.id.in_(doomed)).returning(outbox.c.id)


def lock_password_tokens() -> Select[Any]:
    """Every stored password token by profile name, locked until the end of the transaction."""
    return (
        select(profile.c.name, profile.c.password_encrypted)
        .where(profile.c.password_encrypted.is_not(None))
        .order_by(profile.c.name)
        .with_for_update()
    )


def replace_password_token() -> Update:
    """Store a re-encrypted token (executed with many rows); nothing else of the profile changes.

    Unlike :func:`update_profile` this keeps a pause: the password itself is the same.
    """
    return (
        update(profile)
        .where(profile.c.name == bindparam("b_name"))
        .values(password_encrypted=bindparam("b_token"))
    )


# --- OAuth 2.0 grants --------------------------------------------------------------------------


def select_oauth_grant(profile_id: int, *, lock: bool) -> Select[Any]:
    """A profile's tokens; ``lock``: held until the end of the transaction, so that one worker
    at a time refreshes them (the others wait, then read what it stored)."""
    statement = select(oauth_grant).where(oauth_grant.c.profile_id == profile_id)
    return statement.with_for_update() if lock else statement


def ensure_oauth_grant(profile_id: int) -> Insert:
    """A profile's grant row, empty if it had none: something to lock before the first token
    (a second process inserting it waits for the first one's transaction)."""
    return pg_insert(oauth_grant).values(profile_id=profile_id).on_conflict_do_nothing()


def store_oauth_grant(values: Mapping[str, Any]) -> Insert:
    """Insert or replace a profile's tokens (``values`` names its ``profile_id``)."""
    statement = pg_insert(oauth_grant).values(dict(values))
    changed = {name: statement.excluded[name] for name in values if name != "profile_id"}
    return statement.on_conflict_do_update(index_elements=["profile_id"], set_=changed)


def oauth_grants() -> Select[Any]:
    """Every OAuth grant with its profile's name: who authorised it, when, until when."""
    return (
        select(
            profile.c.name,
            oauth_grant.c.scopes,
            oauth_grant.c.authorized_by,
            oauth_grant.c.authorized_at,
            oauth_grant.c.access_expires_at,
            oauth_grant.c.refreshed_at,
            oauth_grant.c.refresh_count,
            oauth_grant.c.refresh_token_encrypted.is_not(None).label("has_refresh_token"),
        )
        .join(profile, profile.c.id == oauth_grant.c.profile_id)
        .order_by(profile.c.name)
    )


def lock_oauth_credentials() -> Select[Any]:
    """Every stored OAuth credential (secret, certificate, key) by profile name, locked until
    the end of the transaction."""
    return (
        select(profile.c.name, profile.c.oauth_credential_encrypted)
        .where(profile.c.oauth_credential_encrypted.is_not(None))
        .order_by(profile.c.name)
        .with_for_update()
    )


def replace_oauth_credential() -> Update:
    """Store a re-encrypted OAuth credential (executed with many rows)."""
    return (
        update(profile)
        .where(profile.c.name == bindparam("b_name"))
        .values(oauth_credential_encrypted=bindparam("b_token"))
    )


def lock_oauth_grant_tokens() -> Select[Any]:
    """Every grant's stored tokens with its profile's name, the grants locked (a worker that
    is renewing one finishes first)."""
    return (
        select(
            profile.c.name,
            oauth_grant.c.profile_id,
            oauth_grant.c.refresh_token_encrypted,
            oauth_grant.c.access_token_encrypted,
        )
        .join(profile, profile.c.id == oauth_grant.c.profile_id)
        .order_by(profile.c.name)
        .with_for_update(of=oauth_grant)
    )


def replace_oauth_grant_tokens() -> Update:
    """Store a grant's re-encrypted tokens (executed with many rows)."""
    return (
        update(oauth_grant)
        .where(oauth_grant.c.profile_id == bindparam("b_profile_id"))
        .values(
            refresh_token_encrypted=bindparam("b_refresh"),
            access_token_encrypted=bindparam("b_access"),
        )
    )


# --- the web console's users ---------------------------------------------------------------

_CONSOLE_USER_COLUMNS = (
    console_user.c.name,
    console_user.c.role,
    console_user.c.password_hash,
    console_user.c.created_at,
    console_user.c.last_login_at,
)


def console_users() -> Select[Any]:
    """Every console user, by name."""
    return select(*_CONSOLE_USER_COLUMNS).order_by(console_user.c.name)


def console_user_by_name(name: str) -> Select[Any]:
    """One console user (no row: no such user)."""
    return select(*_CONSOLE_USER_COLUMNS).where(console_user.c.name == name)


def insert_console_user(*, name: str, role: str, password_hash: str) -> Executable:
    """A new console user; returns nothing when the name is taken already."""
    return (
        pg_insert(console_user)
        .values(name=name, role=role, password_hash=password_hash)
        .on_conflict_do_nothing(index_elements=[console_user.c.name])
        .returning(console_user.c.id)
    )


def delete_console_user(name: str) -> Executable:
    """Remove a console user; returns its id (no row: no such user)."""
    return delete(console_user).where(console_user.c.name == name).returning(console_user.c.id)


def record_console_login(name: str) -> Update:
    """Note when a console user last signed in."""
    return update(console_user).where(console_user.c.name == name).values(last_login_at=func.now())
