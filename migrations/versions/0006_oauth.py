"""OAuth 2.0 sign-in: profiles with auth_method 'oauth2' and their tokens.

- ``auth_method`` 'xoauth2' (reserved, never accepted by the service) becomes 'oauth2'.
- A profile gains the settings of the app it signs in with (provider, flow, client id,
  tenant, endpoints) and, encrypted, the app's secret, certificate or service-account key.
- ``oauth_grant`` holds each OAuth profile's tokens, encrypted, and who authorised them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORKER_TIMES_END = 2300  # as in worker/models.py

_PROFILE_COLUMNS = (
    ("oauth_provider", sa.Text(), "microsoft or google."),
    ("oauth_flow", sa.Text(), "How the profile gets its tokens (docs/oauth.md)."),
    ("oauth_client_id", sa.Text(), "The registered app's client id."),
    ("oauth_tenant", sa.Text(), "Microsoft: common, organizations, consumers or an id."),
    ("oauth_authority", sa.Text(), "Microsoft: the sign-in authority, when not global."),
    ("oauth_token_url", sa.Text(), "Google: the token endpoint, when not Google's own."),
    ("oauth_auth_url", sa.Text(), "Google: the consent page, when not Google's own."),
    (
        "oauth_credential_encrypted",
        sa.LargeBinary(),
        "Fernet token of the client secret, certificate or service-account key.",
    ),
    (
        "oauth_authorized_at",
        sa.DateTime(timezone=True),
        "When a person last authorised the profile: a new sign-in ends its pauses.",
    ),
)


def _sane_time_check(column: str) -> str:
    return (
        f"{column} IS NULL OR ({column} >= '1970-01-01 00:00+00'"
        f" AND {column} < '{WORKER_TIMES_END}-01-01 00:00+00')"
    )


def _sane_time(column: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(
        _sane_time_check(column), name=op.f(f"ck_oauth_grant_{column}_in_range")
    )


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_constraint(op.f("ck_profile_auth_method"), "profile", schema=schema)
    op.execute(
        f"UPDATE \"{schema}\".profile SET auth_method = 'oauth2'"  # noqa: S608 - the schema is a checked identifier
        " WHERE auth_method = 'xoauth2'"
    )
    op.create_check_constraint(
        op.f("ck_profile_auth_method"),
        "profile",
        "auth_method IN ('login', 'none', 'oauth2')",
        schema=schema,
    )
    for name, type_, comment in _PROFILE_COLUMNS:
        op.add_column("profile", sa.Column(name, type_, comment=comment), schema=schema)
    op.create_check_constraint(
        op.f("ck_profile_oauth_authorized_at_in_range"),
        "profile",
        _sane_time_check("oauth_authorized_at"),
        schema=schema,
    )
    op.create_check_constraint(
        op.f("ck_profile_oauth_provider"),
        "profile",
        "oauth_provider IS NULL OR oauth_provider IN ('microsoft', 'google')",
        schema=schema,
    )
    op.create_check_constraint(
        op.f("ck_profile_oauth_flow"),
        "profile",
        "oauth_flow IS NULL OR oauth_flow IN ('device_code', 'client_credentials', 'authorization_code', 'service_account')",
        schema=schema,
    )
    # A row that said 'xoauth2' has no app: it cannot sign in, so it is switched off, not lost.
    op.execute(
        f"UPDATE \"{schema}\".profile SET enabled = false, oauth_provider = 'microsoft',"  # noqa: S608 - the schema is a checked identifier
        " oauth_flow = 'device_code', oauth_client_id = ''"
        " WHERE auth_method = 'oauth2' AND oauth_client_id IS NULL"
    )
    op.create_check_constraint(
        op.f("ck_profile_oauth_settings"),
        "profile",
        "auth_method <> 'oauth2' OR (oauth_provider IS NOT NULL AND oauth_flow IS NOT NULL AND oauth_client_id IS NOT NULL)",
        schema=schema,
    )
    op.create_table(
        "oauth_grant",
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column(
            "refresh_token_encrypted",
            sa.LargeBinary(),
            comment="Fernet token; NULL for app-only.",
        ),
        sa.Column(
            "access_token_encrypted",
            sa.LargeBinary(),
            comment="Fernet token of the access token.",
        ),
        sa.Column("access_expires_at", sa.DateTime(timezone=True)),
        sa.Column("scopes", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "authorized_by",
            sa.Text(),
            comment="The account that signed in, as the provider named it.",
        ),
        sa.Column("authorized_at", sa.DateTime(timezone=True)),
        sa.Column("refreshed_at", sa.DateTime(timezone=True)),
        sa.Column("refresh_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _sane_time("access_expires_at"),
        _sane_time("authorized_at"),
        _sane_time("refreshed_at"),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            [f"{schema}.profile.id"],
            name=op.f("fk_oauth_grant_profile_id_profile"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile_id", name=op.f("pk_oauth_grant")),
        schema=schema,
        comment="OAuth 2.0 tokens of profiles that sign in with auth_method 'oauth2'.",
    )


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_table("oauth_grant", schema=schema)
    op.drop_constraint(op.f("ck_profile_oauth_settings"), "profile", schema=schema)
    op.drop_constraint(op.f("ck_profile_oauth_flow"), "profile", schema=schema)
    op.drop_constraint(op.f("ck_profile_oauth_provider"), "profile", schema=schema)
    op.drop_constraint(op.f("ck_profile_oauth_authorized_at_in_range"), "profile", schema=schema)
    for name, _, _ in reversed(_PROFILE_COLUMNS):
        op.drop_column("profile", name, schema=schema)
    op.drop_constraint(op.f("ck_profile_auth_method"), "profile", schema=schema)
    # 'oauth2' profiles cannot exist before this revision: they go back to the reserved name.
    op.execute(
        f"UPDATE \"{schema}\".profile SET auth_method = 'xoauth2'"  # noqa: S608 - the schema is a checked identifier
        " WHERE auth_method = 'oauth2'"
    )
    op.create_check_constraint(
        op.f("ck_profile_auth_method"),
        "profile",
        "auth_method IN ('login', 'none', 'xoauth2')",
        schema=schema,
    )
