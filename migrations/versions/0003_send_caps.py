"""Send caps per profile: recipients per day, messages per minute, recipients per message.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 16:15:10.107900
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_CHECKS = (
    ("daily_recipient_cap_positive", "daily_recipient_cap IS NULL OR daily_recipient_cap > 0"),
    ("per_minute_cap_positive", "per_minute_cap IS NULL OR per_minute_cap > 0"),
    (
        "max_recipients_positive",
        "max_recipients_per_message IS NULL OR max_recipients_per_message > 0",
    ),
)


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_index(
        "ix_outbox_sent",
        "outbox",
        ["profile", "sent_at"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
    op.add_column(
        "profile",
        sa.Column(
            "daily_recipient_cap",
            sa.Integer(),
            nullable=True,
            comment="Recipients per rolling 24 h; NULL = no cap.",
        ),
        schema=schema,
    )
    op.add_column(
        "profile",
        sa.Column(
            "per_minute_cap",
            sa.Integer(),
            nullable=True,
            comment="Messages per rolling minute; NULL = no cap.",
        ),
        schema=schema,
    )
    op.add_column(
        "profile",
        sa.Column(
            "max_recipients_per_message",
            sa.Integer(),
            nullable=True,
            comment="Recipients one message may have (Gmail: 100); NULL = no limit.",
        ),
        schema=schema,
    )
    for name, condition in _CHECKS:
        op.create_check_constraint(name, "profile", condition, schema=schema)


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    for name, _ in _CHECKS:
        op.drop_constraint(name, "profile", schema=schema, type_="check")
    op.drop_column("profile", "max_recipients_per_message", schema=schema)
    op.drop_column("profile", "per_minute_cap", schema=schema)
    op.drop_column("profile", "daily_recipient_cap", schema=schema)
    op.drop_index(
        "ix_outbox_sent",
        table_name="outbox",
        schema=schema,
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
