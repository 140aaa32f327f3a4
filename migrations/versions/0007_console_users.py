"""The web console's users: who may sign in, with which role, and their password's hash.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_table(
        "console_user",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column(
            "name",
            sa.Text(),
            nullable=False,
            comment="The login name; how the audit log names them.",
        ),
        sa.Column(
            "role",
            sa.Text(),
            nullable=False,
            comment="admin: may change things; viewer: may look.",
        ),
        sa.Column(
            "password_hash",
            sa.Text(),
            nullable=False,
            comment="Argon2id hash in PHC string form.",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_login_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("name <> ''", name=op.f("ck_console_user_name_not_empty")),
        sa.CheckConstraint("role IN ('admin', 'viewer')", name=op.f("ck_console_user_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_user")),
        sa.UniqueConstraint("name", name=op.f("uq_console_user_name")),
        schema=schema,
        comment="People who may sign in to the web console, and their role.",
    )


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_table("console_user", schema=schema)
