"""Who enqueued each message: the inserting database role, for producer row-level security.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 18:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    # current_user is stable, not volatile: PostgreSQL stores the default for the existing rows
    # (the migrating role) without rewriting the table.
    op.add_column(
        "outbox",
        sa.Column(
            "enqueued_by",
            sa.Text(),
            server_default=sa.text("CURRENT_USER"),
            nullable=False,
            comment="Database role that inserted the message (docs/security.md).",
        ),
        schema=schema,
    )


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_column("outbox", "enqueued_by", schema=schema)
