"""Delivery state: leases, profile pauses, the due-work index, insert triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:42:58.667954
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A message names its profile, or NULL for the default one: it is bound to the default
# profile of the moment it is enqueued. not_before simply moves the first due time.
# SECURITY DEFINER: a producer role may insert without being allowed to read profiles.
_BEFORE_INSERT = """
CREATE FUNCTION "{schema}".outbox_before_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.profile IS NULL THEN
        SELECT name INTO NEW.profile FROM "{schema}".profile WHERE is_default;
    END IF;
    IF NEW.not_before IS NOT NULL AND NEW.status = 'pending' THEN
        NEW.next_attempt_at := greatest(NEW.next_attempt_at, NEW.not_before);
    END IF;
    RETURN NEW;
END $$;
---
CREATE TRIGGER outbox_before_write BEFORE INSERT OR UPDATE OF not_before ON "{schema}".outbox
    FOR EACH ROW EXECUTE FUNCTION "{schema}".outbox_before_write();
"""

# Workers LISTEN on "<schema>_outbox" and wake within milliseconds of a commit.
_NOTIFY = """
CREATE FUNCTION "{schema}".outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{schema}_outbox', '');
    RETURN NULL;
END $$;
---
CREATE TRIGGER outbox_notify AFTER INSERT ON "{schema}".outbox
    FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".outbox_notify();
"""


# Bad input the database itself can refuse (see worker/models.py).
_NEW_CHECKS = (
    ("profile_not_empty", "profile <> ''"),
    (
        "expires_after_not_before",
        "expires_at IS NULL OR not_before IS NULL OR expires_at > not_before",
    ),
    (
        "header_values_are_text",
        """NOT jsonb_path_exists(headers, '$.* ? (@.type() != "string")')""",
    ),
)


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.add_column("outbox", sa.Column("claimed_by", sa.Text(), nullable=True), schema=schema)
    op.add_column(
        "outbox", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True), schema=schema
    )
    op.add_column(
        "outbox",
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        schema=schema,
    )
    op.alter_column(
        "outbox",
        "status_reason",
        existing_type=sa.TEXT(),
        server_default="queued",
        existing_comment="Why the message waits or failed, in words.",
        existing_nullable=True,
        schema=schema,
    )
    op.create_index(
        "ix_outbox_leased",
        "outbox",
        ["lease_expires_at"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["profile", sa.literal_column("priority DESC"), "id"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.add_column(
        "profile",
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        schema=schema,
    )
    op.add_column("profile", sa.Column("pause_reason", sa.Text(), nullable=True), schema=schema)
    op.add_column(
        "profile",
        sa.Column(
            "pause_hint",
            sa.Text(),
            nullable=True,
            comment="What the user should do about the pause.",
        ),
        schema=schema,
    )
    op.add_column(
        "profile",
        sa.Column("pause_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema=schema,
    )
    for name, condition in _NEW_CHECKS:
        op.create_check_constraint(name, "outbox", condition, schema=schema)
    for script in (_BEFORE_INSERT, _NOTIFY):
        # asyncpg runs one statement per call.
        for statement in script.format(schema=schema).split("---"):
            op.execute(statement)


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    for name, _ in _NEW_CHECKS:
        op.drop_constraint(name, "outbox", schema=schema, type_="check")
    op.execute(f'DROP TRIGGER outbox_notify ON "{schema}".outbox')
    op.execute(f'DROP FUNCTION "{schema}".outbox_notify()')
    op.execute(f'DROP TRIGGER outbox_before_write ON "{schema}".outbox')
    op.execute(f'DROP FUNCTION "{schema}".outbox_before_write()')
    op.drop_column("profile", "pause_count", schema=schema)
    op.drop_column("profile", "pause_hint", schema=schema)
    op.drop_column("profile", "pause_reason", schema=schema)
    op.drop_column("profile", "paused_until", schema=schema)
    op.drop_index(
        "ix_outbox_pending",
        table_name="outbox",
        schema=schema,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "ix_outbox_leased",
        table_name="outbox",
        schema=schema,
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.alter_column(
        "outbox",
        "status_reason",
        existing_type=sa.TEXT(),
        server_default=None,
        existing_comment="Why the message waits or failed, in words.",
        existing_nullable=True,
        schema=schema,
    )
    op.drop_column("outbox", "lease_expires_at", schema=schema)
    op.drop_column("outbox", "claimed_at", schema=schema)
    op.drop_column("outbox", "claimed_by", schema=schema)
