"""Every SQL statement the service runs, one named builder each.

Only :mod:`worker.repository` calls these. Statements name the declared schema ``mail``; the
engine translates it to the configured one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Insert,
    Integer,
    Select,
    Update,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.expression import Executable

from worker.models import attachment, attempt, outbox, profile

__all__ = [
    "CLAIMED_MESSAGE_COLUMNS",
    "CLAIMED_PROFILE_PREFIX",
    "cap_usage",
    "claim_due",
    "clear_default_profile",
    "count_waiting_messages",
    "defer_for_cap",
    "delete_profile",
    "explain_waiting",
    "fail_expired",
    "fail_unroutable",
    "finish_message",
    "insert_attachments",
    "insert_attempts",
    "insert_message",
    "insert_profile",
    "lock_capped_profiles",
    "message_id_by_idempotency_key",
    "nth_oldest_send",
    "pause_profile",
    "profile_exists",
    "reclaim_lost_leases",
    "release_claimed",
    "renew_leases",
    "resume_profile",
    "select_attachments",
    "select_default_profile",
    "select_profile_by_name",
    "select_profiles",
    "set_default_profile",
    "update_profile",
    "work_due_within",
]


# --- profiles --------------------------------------------------------------------------------


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


def insert_message(values: Mapping[str, Any]) -> Executable:
    """A new outbox row; returns its id, or no row when its idempotency key is taken."""
    return (
        pg_insert(outbox)
        .values(**values)
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


def claim_due(
    *,
    worker: str,
    lease_seconds: float,
    free_slots: int,
    per_connection: int,
    cap_room: Mapping[str, int],
) -> Executable:
    """Claim due messages, fairly across profiles; returns each with its profile's settings.

    Per usable profile (enabled, not paused) the oldest, highest-priority due rows are locked
    with SKIP LOCKED, so concurrent workers never take the same row and a backlog on one
    profile cannot hold back another: every profile gets its share of every claim. A profile
    just out of a pause gets one message, the probe. ``cap_room`` limits capped profiles to
    what their caps still allow (see :func:`lock_capped_profiles`).
    """
    candidate = profile.alias("candidate")
    # What a capped profile may still send; the others are not limited by it.
    room = func.coalesce(
        cast(
            bindparam("cap_room", dict(cap_room), type_=JSONB).op("->>")(candidate.c.name), Integer
        ),
        free_slots,
    )
    share = case(
        (candidate.c.pause_count > 0, func.least(1, room)),
        else_=func.least(free_slots, candidate.c.max_connections * per_connection, room),
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
    picked = (
        select(due.c.id)
        .select_from(candidate)
        .join(due, true())
        .where(
            candidate.c.enabled,
            or_(candidate.c.paused_until.is_(None), candidate.c.paused_until <= func.now()),
        )
    )
    domain = func.split_part(profile.c.from_address, "@", 2)
    new_message_id = func.format("<%s@%s>", func.gen_random_uuid(), domain)
    has_attachments = exists().where(attachment.c.outbox_id == outbox.c.id)
    return (
        update(outbox)
        .where(outbox.c.id.in_(picked), profile.c.name == outbox.c.profile)
        .values(
            status="sending",
            status_reason="sending",
            attempts=outbox.c.attempts + 1,
            claimed_by=worker,
            claimed_at=func.now(),
            lease_expires_at=func.now() + _seconds(lease_seconds),
            message_id=func.coalesce(outbox.c.message_id, new_message_id),
        )
        .returning(
            *[outbox.c[name] for name in CLAIMED_MESSAGE_COLUMNS],
            has_attachments.label("has_attachments"),
            *[column.label(CLAIMED_PROFILE_PREFIX + column.name) for column in profile.c],
        )
    )


CLAIMED_MESSAGE_COLUMNS = (
    "id", "profile", "to_addrs", "cc_addrs", "bcc_addrs", "subject", "body_text", "body_html",
    "headers", "priority", "expires_at", "kind", "attempts", "message_id", "created_at",
    "claimed_at",
)  # fmt: skip


def select_attachments(outbox_id: int) -> Select[Any]:
    """A message's attachments, in the order they were inserted."""
    return (
        select(attachment.c.filename, attachment.c.content_type, attachment.c.content)
        .where(attachment.c.outbox_id == outbox_id)
        .order_by(attachment.c.id)
    )


def renew_leases(*, worker: str, lease_seconds: float) -> Update:
    """Extend the leases of every row this worker is still sending."""
    return (
        update(outbox)
        .where(outbox.c.status == "sending", outbox.c.claimed_by == worker)
        .values(lease_expires_at=func.now() + _seconds(lease_seconds))
    )


def finish_message() -> Update:
    """Record the final or next state of a claimed message (executed with many rows).

    Guarded by ``status = 'sending'`` unless ``:force`` — a result that only reschedules must
    not bring back a row an operator cancelled meanwhile; a delivery is recorded regardless.
    """
    return (
        update(outbox)
        .where(
            outbox.c.id == bindparam("b_id"),
            or_(outbox.c.status == "sending", bindparam("b_force")),
        )
        .values(
            status=bindparam("b_status"),
            status_reason=bindparam("b_status_reason"),
            attempts=outbox.c.attempts - bindparam("b_uncount"),
            next_attempt_at=func.coalesce(bindparam("b_next_attempt_at"), outbox.c.next_attempt_at),
            last_error=bindparam("b_last_error"),
            smtp_response=func.coalesce(bindparam("b_smtp_response"), outbox.c.smtp_response),
            sent_at=bindparam("b_sent_at"),
            claimed_by=None,
            lease_expires_at=None,
        )
    )


def insert_attempts() -> Insert:
    """Attempt records (executed with many rows)."""
    return insert(attempt)


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


def reclaim_lost_leases(*, max_attempts: int) -> Executable:
    """Rows whose worker died become due again, and their attempt is recorded as interrupted.

    A row interrupted ``max_attempts`` times is failed: a message that kills its worker must
    not loop forever.
    """
    expired = (
        select(outbox.c.id, outbox.c.claimed_by, outbox.c.claimed_at)
        .where(outbox.c.status == "sending", outbox.c.lease_expires_at < func.now())
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
                (gave_up, "failed: its worker stopped during every attempt"),
                else_="waiting to retry: the worker sending it stopped (lease expired)",
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
            literal("the worker stopped before the result was recorded (lease expired)"),
        ),
    )  # fmt: skip


def fail_expired() -> Update:
    """Pending messages past their ``expires_at`` are failed, never sent."""
    return (
        update(outbox)
        .where(outbox.c.status == "pending", outbox.c.expires_at <= func.now())
        .values(status="failed", status_reason="expired: not sent before expires_at")
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
                (outbox.c.profile.is_(None), "no profile given and no default profile exists"),
                else_=func.format("profile %s does not exist", outbox.c.profile),
            ),
        )
    )


def explain_waiting() -> Update:
    """Pending messages of a disabled or paused profile say so in ``status_reason``."""
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


def _seconds(value: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, value)


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


# --- caps ------------------------------------------------------------------------------------

# First key of the advisory locks that make claims of one capped profile take turns.
_CAP_LOCK_SPACE = 0x6D61696C  # "mail"
_RECIPIENTS = (
    func.cardinality(outbox.c.to_addrs)
    + func.cardinality(outbox.c.cc_addrs)
    + func.cardinality(outbox.c.bcc_addrs)
)


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
        .where(
            _usable(profile),
            or_(
                profile.c.daily_cap.is_not(None),
                profile.c.daily_recipient_cap.is_not(None),
                profile.c.per_minute_cap.is_not(None),
            ),
        )
        .order_by(profile.c.name)
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
