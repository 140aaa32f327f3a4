"""Hardening: the database refuses what a worker cannot handle, producers cannot forge state.

- Times a worker cannot hold ('infinity', year 10000) are refused by CHECK constraints;
  rows already holding one are repaired first (see ``_REPAIRS``).
- A profile never logs in over an unencrypted connection (``encryption = 'none'`` with a
  login); such profiles become ``auto``, which requires TLS before AUTH.
- A message inserted by any role but the owner starts fresh: the insert trigger resets every
  column of the delivery state (status, attempts, sent_at, lease, Message-ID ...).
- ``cancel_message(id, reason)`` cancels a pending message of the caller's, so producers no
  longer need UPDATE on the outbox; ``is_own_message(id)`` answers "is this mine" for the
  attachment policy of docs/security.md without showing other producers' rows.
- ``profile_grant``: which producer roles may send through which profile.
- ``lease_clock``: the lease guard survives a failover, not only a restart.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The years the times must end before, as in worker/models.py (a migration keeps its own copy).
PRODUCER_TIMES_END = 2200
WORKER_TIMES_END = 2300
_PRODUCER_TIMES = {"outbox": ("not_before", "expires_at")}
_WORKER_TIMES = {
    "outbox": ("next_attempt_at", "created_at", "sent_at", "claimed_at", "lease_expires_at"),
    "profile": ("paused_until", "created_at", "updated_at"),
    "attempt": ("started_at", "finished_at"),
}


def _in_range(column: str, end: int) -> str:
    return (
        f"{column} IS NULL OR ({column} >= '1970-01-01 00:00+00'"
        f" AND {column} < '{end}-01-01 00:00+00')"
    )


def _checks() -> list[tuple[str, str, str]]:
    """Every new CHECK constraint: (table, name without the ck_<table>_ prefix, condition)."""
    checks = [
        ("profile", "no_login_in_clear", "encryption <> 'none' OR auth_method = 'none'"),
        ("outbox", "sent_at_when_sent", "(sent_at IS NOT NULL) = (status = 'sent')"),
    ]
    for times, end in ((_PRODUCER_TIMES, PRODUCER_TIMES_END), (_WORKER_TIMES, WORKER_TIMES_END)):
        for table, columns in times.items():
            checks += [(table, f"{column}_in_range", _in_range(column, end)) for column in columns]
    return checks


# Rows that break the new rules are repaired, never deleted; a message that cannot be sent as
# it is fails with the reason in words. Run in this order, before the constraints are added.
_REPAIRS = """
UPDATE "{schema}".outbox
SET status = 'failed',
    status_reason = 'failed: its not_before or expires_at (' || coalesce(not_before::text, '-')
        || ' / ' || coalesce(expires_at::text, '-') || ') is outside the years 1970 to {last_year}',
    claimed_by = NULL, lease_expires_at = NULL
WHERE status IN ('pending', 'sending')
    AND NOT ({not_before_ok} AND {expires_at_ok})
---
UPDATE "{schema}".outbox
SET not_before = CASE WHEN {not_before_ok} THEN not_before END,
    expires_at = CASE WHEN {expires_at_ok} THEN expires_at END
WHERE NOT ({not_before_ok} AND {expires_at_ok})
---
UPDATE "{schema}".outbox
SET next_attempt_at = CASE WHEN {next_attempt_at_ok} THEN next_attempt_at ELSE now() END,
    created_at = CASE WHEN {created_at_ok} THEN created_at ELSE now() END,
    claimed_at = CASE WHEN {claimed_at_ok} THEN claimed_at END,
    lease_expires_at = CASE WHEN {lease_expires_at_ok} THEN lease_expires_at ELSE now() END,
    sent_at = CASE WHEN {sent_at_ok} THEN sent_at ELSE now() END
WHERE NOT ({next_attempt_at_ok} AND {created_at_ok} AND {claimed_at_ok}
    AND {lease_expires_at_ok} AND {sent_at_ok})
---
UPDATE "{schema}".outbox SET sent_at = NULL WHERE sent_at IS NOT NULL AND status <> 'sent'
---
UPDATE "{schema}".outbox SET sent_at = least(sent_at, now()) WHERE sent_at > now()
---
UPDATE "{schema}".outbox AS o
SET sent_at = coalesce(
    (SELECT max(a.finished_at) FROM "{schema}".attempt AS a WHERE a.outbox_id = o.id),
    o.created_at)
WHERE status = 'sent' AND sent_at IS NULL
---
UPDATE "{schema}".outbox SET lease_expires_at = now()
WHERE status = 'sending' AND lease_expires_at IS NULL
---
UPDATE "{schema}".profile
SET paused_until = CASE WHEN {paused_until_ok} THEN paused_until END,
    created_at = CASE WHEN {created_at_ok} THEN created_at ELSE now() END,
    updated_at = CASE WHEN {updated_at_ok} THEN updated_at ELSE now() END
WHERE NOT ({paused_until_ok} AND {created_at_ok} AND {updated_at_ok})
---
UPDATE "{schema}".profile SET encryption = 'auto'
WHERE encryption = 'none' AND auth_method <> 'none'
---
UPDATE "{schema}".attempt
SET started_at = CASE WHEN {started_at_ok} THEN started_at ELSE now() END,
    finished_at = CASE WHEN {finished_at_ok} THEN finished_at END
WHERE NOT ({started_at_ok} AND {finished_at_ok})
"""

# The insert trigger of 0002, now run with the inserting role's rights (SECURITY INVOKER), so
# it can tell the owner from everyone else; the default profile is read by a function that
# has the owner's rights, as producers may not read profiles.
_FUNCTIONS = """
CREATE FUNCTION "{schema}".default_profile() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT p.name FROM "{schema}".profile AS p WHERE p.is_default $$
---
CREATE OR REPLACE FUNCTION "{schema}".outbox_before_write() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- The delivery state belongs to the workers. Only the owner (migrations, operators,
        -- history imports) may insert it; for every other role a message starts fresh.
        IF NOT pg_has_role(current_user,
                           (SELECT c.relowner FROM pg_class AS c WHERE c.oid = TG_RELID),
                           'USAGE') THEN
            NEW.status := 'pending';
            NEW.status_reason := 'queued';
            NEW.attempts := 0;
            NEW.next_attempt_at := now();
            NEW.last_error := NULL;
            NEW.smtp_response := NULL;
            NEW.message_id := NULL;
            NEW.created_at := now();
            NEW.sent_at := NULL;
            NEW.claimed_by := NULL;
            NEW.claimed_at := NULL;
            NEW.lease_expires_at := NULL;
            NEW.enqueued_by := current_user;
        END IF;
        IF NEW.profile IS NULL THEN
            NEW.profile := "{schema}".default_profile();
        END IF;
    END IF;
    IF NEW.not_before IS NOT NULL AND NEW.status = 'pending' THEN
        -- A not_before out of range is refused by its own constraint, which names it.
        NEW.next_attempt_at := greatest(
            NEW.next_attempt_at, least(NEW.not_before, '{producer_end}-01-01 00:00+00'));
    END IF;
    RETURN NEW;
END $$
---
CREATE FUNCTION "{schema}".cancel_message(outbox_id bigint, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    -- The caller's own message: one enqueued by a role its login role may act as.
    WITH cancelled AS (
        UPDATE "{schema}".outbox AS o
        SET status = 'cancelled',
            status_reason = 'cancelled: ' || coalesce(nullif(reason, ''), 'by its sender')
        WHERE o.id = outbox_id
            AND o.status = 'pending'
            AND o.enqueued_by IN (
                SELECT r.rolname FROM pg_roles AS r WHERE pg_has_role(session_user, r.oid, 'MEMBER'))
        RETURNING o.id
    )
    SELECT EXISTS (SELECT FROM cancelled)
$$
---
REVOKE ALL ON FUNCTION "{schema}".cancel_message(bigint, text) FROM PUBLIC
---
CREATE FUNCTION "{schema}".is_own_message(outbox_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
    -- VOLATILE: it must see the message that the caller's own statement has just inserted.
    SELECT EXISTS (
        SELECT FROM "{schema}".outbox AS o
        WHERE o.id = outbox_id AND o.enqueued_by = current_user)
$$
---
CREATE FUNCTION "{schema}".may_use_profile(profile_name text, role_name name) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    -- Only about a role the caller may act as: no one learns other roles' grants.
    SELECT pg_has_role(session_user, role_name, 'MEMBER') AND (
        NOT EXISTS (SELECT FROM "{schema}".profile_grant)
        OR EXISTS (
            SELECT FROM "{schema}".profile_grant AS g JOIN pg_roles AS r ON r.rolname = g.grantee
            WHERE g.profile = profile_name AND pg_has_role(role_name, r.oid, 'MEMBER')))
$$
---
REVOKE ALL ON FUNCTION "{schema}".may_use_profile(text, name) FROM PUBLIC
---
DO $$
BEGIN
    -- docs/security.md of earlier versions had administrators create this function for the
    -- attachment policy. It told anyone who called it the owner of any message; it now
    -- answers for the caller's own messages only (NULL for the rest), so that policy works
    -- as before and leaks nothing.
    IF to_regprocedure('"{schema}".message_enqueued_by(bigint)') IS NOT NULL THEN
        CREATE OR REPLACE FUNCTION "{schema}".message_enqueued_by(outbox_id bigint) RETURNS text
        LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
        AS 'SELECT o.enqueued_by FROM "{schema}".outbox AS o
            WHERE o.id = outbox_id AND o.enqueued_by = current_user';
    END IF;
END $$
"""

# 0002's trigger function, for the downgrade.
_OLD_BEFORE_WRITE = """
CREATE OR REPLACE FUNCTION "{schema}".outbox_before_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.profile IS NULL THEN
        SELECT name INTO NEW.profile FROM "{schema}".profile WHERE is_default;
    END IF;
    IF NEW.not_before IS NOT NULL AND NEW.status = 'pending' THEN
        NEW.next_attempt_at := greatest(NEW.next_attempt_at, NEW.not_before);
    END IF;
    RETURN NEW;
END $$
"""


def _statements(script: str, **values: object) -> list[str]:
    # asyncpg runs one statement per call.
    return [statement for statement in script.format(**values).split("---") if statement.strip()]


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    ok = {
        f"{column}_ok": f"({_in_range(column, end)})"
        for times, end in ((_PRODUCER_TIMES, PRODUCER_TIMES_END), (_WORKER_TIMES, WORKER_TIMES_END))
        for columns in times.values()
        for column in columns
    }
    # "created_at_ok" serves the outbox and the profile alike: the same rule for the same name.
    for statement in _statements(_REPAIRS, schema=schema, last_year=PRODUCER_TIMES_END - 1, **ok):
        op.execute(statement)
    for table, name, condition in _checks():
        # NOT VALID, then VALIDATE: the check of the existing rows does not block writers.
        constraint = f"ck_{table}_{name}"
        op.execute(
            f'ALTER TABLE "{schema}".{table} ADD CONSTRAINT {constraint}'
            f" CHECK ({condition}) NOT VALID"
        )
        op.execute(f'ALTER TABLE "{schema}".{table} VALIDATE CONSTRAINT {constraint}')
    op.create_table(
        "profile_grant",
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column(
            "grantee", sa.Text(), nullable=False, comment="Database role (or group role) name."
        ),
        sa.CheckConstraint("grantee <> ''", name=op.f("ck_profile_grant_grantee_not_empty")),
        sa.ForeignKeyConstraint(
            ["profile"],
            [f"{schema}.profile.name"],
            name=op.f("fk_profile_grant_profile_profile"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile", "grantee", name=op.f("pk_profile_grant")),
        schema=schema,
        comment="Producer roles allowed to send through a profile; none at all: every role may.",
    )
    op.create_table(
        "lease_clock",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "server_started",
            sa.DateTime(timezone=True),
            nullable=False,
            comment=(
                "pg_postmaster_start_time() of the server last seen; another one means a"
                " restart or a failover."
            ),
        ),
        sa.Column("up_since", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id", name=op.f("ck_lease_clock_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lease_clock")),
        schema=schema,
        comment="One row: since when the workers have seen the current database server up.",
    )
    # Up since the server started, as the guard before this table assumed.
    op.execute(
        f'INSERT INTO "{schema}".lease_clock (server_started, up_since)'  # noqa: S608 - the schema is a checked identifier
        " VALUES (pg_postmaster_start_time(), pg_postmaster_start_time())"
    )
    for statement in _statements(_FUNCTIONS, schema=schema, producer_end=PRODUCER_TIMES_END):
        op.execute(statement)


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    for statement in _statements(_OLD_BEFORE_WRITE, schema=schema):
        op.execute(statement)
    op.execute(f'DROP FUNCTION "{schema}".may_use_profile(text, name)')
    op.execute(f'DROP FUNCTION "{schema}".is_own_message(bigint)')
    op.execute(f'DROP FUNCTION "{schema}".cancel_message(bigint, text)')
    op.execute(f'DROP FUNCTION "{schema}".default_profile()')
    op.drop_table("lease_clock", schema=schema)
    op.drop_table("profile_grant", schema=schema)
    for table, name, _ in reversed(_checks()):
        op.drop_constraint(op.f(f"ck_{table}_{name}"), table, schema=schema, type_="check")
