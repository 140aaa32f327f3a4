"""The console's queue page: indexes for the newest-first order, with and without a status.

The queue page lists messages by ``(created_at, id)`` descending, a page at a time from the
last row's key (keyset pagination). ``ix_outbox_created`` serves the list and a time filter;
``ix_outbox_status_created`` serves a status filter (failed, pending ...), which would
otherwise read the whole history to find a rare status.

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-20 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_index(
        "ix_outbox_created", "outbox", ["created_at", "id"], unique=False, schema=schema
    )
    op.create_index(
        "ix_outbox_status_created",
        "outbox",
        ["status", "created_at", "id"],
        unique=False,
        schema=schema,
    )


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_index("ix_outbox_status_created", table_name="outbox", schema=schema)
    op.drop_index("ix_outbox_created", table_name="outbox", schema=schema)
