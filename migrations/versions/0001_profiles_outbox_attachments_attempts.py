"""Profiles, outbox, attachments and delivery attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 15:37:07.127344
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = op.get_context().version_table_schema

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "profile",
            sa.Text(),
            nullable=True,
            comment="Account name of the profile; NULL = the default profile.",
        ),
        sa.Column(
            "to_addrs", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "cc_addrs", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "bcc_addrs", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("subject", sa.Text(), server_default="", nullable=False),
        sa.Column("body_text", sa.Text(), server_default="", nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column(
            "headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), server_default="notification", nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column(
            "status_reason",
            sa.Text(),
            nullable=True,
            comment="Why the message waits or failed, in words.",
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("smtp_response", sa.Text(), nullable=True),
        sa.Column(
            "message_id",
            sa.Text(),
            nullable=True,
            comment="Message-ID header, generated once, reused on retries.",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "idempotency_key <> ''", name=op.f("ck_outbox_idempotency_key_not_empty")
        ),
        sa.CheckConstraint(
            "jsonb_typeof(headers) = 'object'", name=op.f("ck_outbox_headers_object")
        ),
        sa.CheckConstraint("kind IN ('notification', 'test')", name=op.f("ck_outbox_kind")),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')",
            name=op.f("ck_outbox_status"),
        ),
        sa.CheckConstraint(
            "array_position(to_addrs, NULL) IS NULL AND array_position(cc_addrs, NULL) IS NULL AND array_position(bcc_addrs, NULL) IS NULL",
            name=op.f("ck_outbox_no_null_recipient"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_attempts_not_negative")),
        sa.CheckConstraint(
            "cardinality(to_addrs) + cardinality(cc_addrs) + cardinality(bcc_addrs) > 0",
            name=op.f("ck_outbox_has_recipient"),
        ),
        sa.CheckConstraint("priority >= 0", name=op.f("ck_outbox_priority_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_idempotency_key")),
        schema=schema,
        comment="Messages to send. Other services insert here, inside their own transactions.",
    )
    op.create_table(
        "profile",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "name", sa.Text(), nullable=False, comment="Account name; how callers refer to it."
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("from_address", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), server_default="", nullable=False),
        sa.Column("reply_to", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("server_type", sa.Text(), server_default="smtp", nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("encryption", sa.Text(), server_default="auto", nullable=False),
        sa.Column("auth_method", sa.Text(), server_default="login", nullable=False),
        sa.Column("login", sa.Text(), nullable=True),
        sa.Column(
            "password_encrypted",
            sa.LargeBinary(),
            nullable=True,
            comment="Fernet token; never the plain password.",
        ),
        sa.Column("verify_tls", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "ca_bundle",
            sa.Text(),
            nullable=True,
            comment="Path of a CA file that signs the server certificate.",
        ),
        sa.Column(
            "daily_cap",
            sa.Integer(),
            nullable=True,
            comment="Messages per rolling 24 h; NULL = no cap.",
        ),
        sa.Column(
            "max_connections", sa.SmallInteger(), server_default=sa.text("2"), nullable=False
        ),
        sa.Column("timeout_seconds", sa.Integer(), server_default=sa.text("60"), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "preset",
            sa.Text(),
            nullable=True,
            comment="Provider preset the profile was made from, if any.",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "auth_method = 'none' OR login IS NOT NULL", name=op.f("ck_profile_login_when_auth")
        ),
        sa.CheckConstraint(
            "auth_method IN ('login', 'none', 'xoauth2')", name=op.f("ck_profile_auth_method")
        ),
        sa.CheckConstraint(
            "encryption IN ('auto', 'ssl', 'starttls', 'none')", name=op.f("ck_profile_encryption")
        ),
        sa.CheckConstraint("name <> ''", name=op.f("ck_profile_name_not_empty")),
        sa.CheckConstraint("server_type = 'smtp'", name=op.f("ck_profile_server_type")),
        sa.CheckConstraint(
            "daily_cap IS NULL OR daily_cap > 0", name=op.f("ck_profile_daily_cap_positive")
        ),
        sa.CheckConstraint(
            "max_connections BETWEEN 1 AND 50", name=op.f("ck_profile_max_connections_range")
        ),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name=op.f("ck_profile_port_range")),
        sa.CheckConstraint(
            "timeout_seconds BETWEEN 1 AND 3600", name=op.f("ck_profile_timeout_range")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile")),
        sa.UniqueConstraint("name", name=op.f("uq_profile_name")),
        schema=schema,
        comment="SMTP profiles: a mail program's account page each.",
    )
    op.create_index(
        "uq_profile_single_default",
        "profile",
        ["is_default"],
        unique=True,
        schema=schema,
        postgresql_where="is_default",
    )
    op.create_table(
        "attachment",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column(
            "content_type", sa.Text(), server_default="application/octet-stream", nullable=False
        ),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint(
            "content_type LIKE '%_/_%'", name=op.f("ck_attachment_content_type_shape")
        ),
        sa.CheckConstraint("filename <> ''", name=op.f("ck_attachment_filename_not_empty")),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            [f"{schema}.outbox.id"],
            name=op.f("fk_attachment_outbox_id_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment")),
        schema=schema,
        comment="Files attached to outbox messages, inserted in the message's transaction.",
    )
    op.create_index(
        op.f("ix_attachment_outbox_id"), "attachment", ["outbox_id"], unique=False, schema=schema
    )
    op.create_table(
        "attempt",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "outcome",
            sa.Text(),
            nullable=True,
            comment="sent, partial, retry, failed, deferred or interrupted.",
        ),
        sa.Column("smtp_code", sa.SmallInteger(), nullable=True),
        sa.Column("smtp_text", sa.Text(), nullable=True),
        sa.Column("tls_version", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "recipients",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment="Per-recipient result: address -> {code, text}.",
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            [f"{schema}.outbox.id"],
            name=op.f("fk_attempt_outbox_id_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempt")),
        schema=schema,
        comment="One row per delivery attempt of an outbox message.",
    )
    op.create_index(
        op.f("ix_attempt_outbox_id_attempt_no"),
        "attempt",
        ["outbox_id", "attempt_no"],
        unique=False,
        schema=schema,
    )


def downgrade() -> None:
    schema = op.get_context().version_table_schema

    op.drop_index(op.f("ix_attempt_outbox_id_attempt_no"), table_name="attempt", schema=schema)
    op.drop_table("attempt", schema=schema)
    op.drop_index(op.f("ix_attachment_outbox_id"), table_name="attachment", schema=schema)
    op.drop_table("attachment", schema=schema)
    op.drop_index(
        "uq_profile_single_default",
        table_name="profile",
        schema=schema,
        postgresql_where="is_default",
    )
    op.drop_table("profile", schema=schema)
    op.drop_table("outbox", schema=schema)
