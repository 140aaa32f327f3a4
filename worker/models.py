"""The database schema as SQLAlchemy Core tables: the declared truth the migrations must match.

Tables are declared in the schema ``mail``. A deployment that configures another schema name
gets the same tables there: the engine translates ``mail`` at execution time
(``schema_translate_map``), so no query spells the schema name itself.

The ``outbox`` and ``attachment`` tables and their column names are the public contract with
the services that enqueue mail (see ``docs/outbox.md``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

__all__ = [
    "DECLARED_SCHEMA",
    "attachment",
    "attempt",
    "console_user",
    "lease_clock",
    "metadata",
    "oauth_grant",
    "outbox",
    "profile",
    "profile_grant",
]

DECLARED_SCHEMA = "mail"

metadata = MetaData(
    schema=DECLARED_SCHEMA,
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    },
)

ENCRYPTION_MODES = ("auto", "ssl", "starttls", "none")
AUTH_METHODS = ("login", "none", "oauth2")
OAUTH_PROVIDERS = ("microsoft", "google")
OAUTH_FLOWS = ("device_code", "client_credentials", "authorization_code", "service_account")
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed", "cancelled")
MESSAGE_KINDS = ("notification", "test")
# What an operator may send again (unless expired), and what withdraw: messages retry / cancel.
RETRYABLE_STATUSES = ("failed", "cancelled")
CANCELLABLE_STATUSES = ("pending",)
CONSOLE_ROLES = ("admin", "viewer")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


# Times a worker can hold (Python's datetime ends in 9999; 'infinity' has no datetime at all),
# with room to spare: a producer's dates end before 2200, the times the worker writes, which
# may add back-off or a pause to a producer's date, before 2300.
PRODUCER_TIMES_END = 2200
WORKER_TIMES_END = 2300


def sane_time(column: str, *, end: int) -> CheckConstraint:
    """``column`` is NULL or a finite time from 1970 up to (not including) the year ``end``."""
    return CheckConstraint(
        f"{column} IS NULL OR ({column} >= '1970-01-01 00:00+00'"
        f" AND {column} < '{end}-01-01 00:00+00')",
        name=f"{column}_in_range",
    )


profile = Table(
    "profile",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False, comment="Account name; how callers refer to it."),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("from_address", Text, nullable=False),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("reply_to", Text),
    Column("description", Text, nullable=False, server_default=""),
    Column("server_type", Text, nullable=False, server_default="smtp"),
    Column("host", Text, nullable=False),
    Column("port", Integer, nullable=False),
    Column("encryption", Text, nullable=False, server_default="auto"),
    Column("auth_method", Text, nullable=False, server_default="login"),
    Column("login", Text),
    Column("password_encrypted", LargeBinary, comment="Fernet token; never the plain password."),
    Column("verify_tls", Boolean, nullable=False, server_default=text("true")),
    Column("ca_bundle", Text, comment="Path of a CA file that signs the server certificate."),
    Column("daily_cap", Integer, comment="Messages per rolling 24 h; NULL = no cap."),
    Column("daily_recipient_cap", Integer, comment="Recipients per rolling 24 h; NULL = no cap."),
    Column("per_minute_cap", Integer, comment="Messages per rolling minute; NULL = no cap."),
    Column(
        "max_recipients_per_message",
        Integer,
        comment="Recipients one message may have (Gmail: 100); NULL = no limit.",
    ),
    Column("max_connections", SmallInteger, nullable=False, server_default=text("2")),
    Column("timeout_seconds", Integer, nullable=False, server_default=text("60")),
    Column("is_default", Boolean, nullable=False, server_default=text("false")),
    Column("preset", Text, comment="Provider preset the profile was made from, if any."),
    # OAuth 2.0 sign-in (auth_method 'oauth2'): the app registered with the provider. Its
    # tokens live in oauth_grant.
    Column("oauth_provider", Text, comment="microsoft or google."),
    Column("oauth_flow", Text, comment="How the profile gets its tokens (docs/oauth.md)."),
    Column("oauth_client_id", Text, comment="The registered app's client id."),
    Column("oauth_tenant", Text, comment="Microsoft: common, organizations, consumers or an id."),
    Column("oauth_authority", Text, comment="Microsoft: the sign-in authority, when not global."),
    Column("oauth_token_url", Text, comment="Google: the token endpoint, when not Google's own."),
    Column("oauth_auth_url", Text, comment="Google: the consent page, when not Google's own."),
    Column(
        "oauth_credential_encrypted",
        LargeBinary,
        comment="Fernet token of the client secret, certificate or service-account key.",
    ),
    Column(
        "oauth_authorized_at",
        DateTime(timezone=True),
        comment="When a person last authorised the profile: a new sign-in ends its pauses.",
    ),
    # Delivery state, written by workers: a paused profile's messages wait without spending
    # their attempts until paused_until; then one message probes.
    Column("paused_until", DateTime(timezone=True)),
    Column("pause_reason", Text),
    Column("pause_hint", Text, comment="What the user should do about the pause."),
    Column("pause_count", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("name"),
    CheckConstraint("name <> ''", name="name_not_empty"),
    CheckConstraint("server_type = 'smtp'", name="server_type"),
    CheckConstraint("port BETWEEN 1 AND 65535", name="port_range"),
    CheckConstraint(_one_of("encryption", ENCRYPTION_MODES), name="encryption"),
    CheckConstraint(_one_of("auth_method", AUTH_METHODS), name="auth_method"),
    CheckConstraint("daily_cap IS NULL OR daily_cap > 0", name="daily_cap_positive"),
    CheckConstraint(
        "daily_recipient_cap IS NULL OR daily_recipient_cap > 0",
        name="daily_recipient_cap_positive",
    ),
    CheckConstraint("per_minute_cap IS NULL OR per_minute_cap > 0", name="per_minute_cap_positive"),
    CheckConstraint(
        "max_recipients_per_message IS NULL OR max_recipients_per_message > 0",
        name="max_recipients_positive",
    ),
    CheckConstraint("max_connections BETWEEN 1 AND 50", name="max_connections_range"),
    CheckConstraint("timeout_seconds BETWEEN 1 AND 3600", name="timeout_range"),
    # A profile that logs in has something to log in with; the password may come later.
    CheckConstraint("auth_method = 'none' OR login IS NOT NULL", name="login_when_auth"),
    # Never a password over an unencrypted connection, even for a row changed with plain SQL.
    CheckConstraint("encryption <> 'none' OR auth_method = 'none'", name="no_login_in_clear"),
    CheckConstraint(
        "oauth_provider IS NULL OR " + _one_of("oauth_provider", OAUTH_PROVIDERS),
        name="oauth_provider",
    ),
    CheckConstraint(
        "oauth_flow IS NULL OR " + _one_of("oauth_flow", OAUTH_FLOWS), name="oauth_flow"
    ),
    # An OAuth profile says whose app it signs in with, and how.
    CheckConstraint(
        "auth_method <> 'oauth2' OR (oauth_provider IS NOT NULL AND oauth_flow IS NOT NULL"
        " AND oauth_client_id IS NOT NULL)",
        name="oauth_settings",
    ),
    sane_time("paused_until", end=WORKER_TIMES_END),
    sane_time("oauth_authorized_at", end=WORKER_TIMES_END),
    sane_time("created_at", end=WORKER_TIMES_END),
    sane_time("updated_at", end=WORKER_TIMES_END),
    comment="SMTP profiles: a mail program's account page each.",
)
# At most one profile is the default one.
Index(
    "uq_profile_single_default",
    profile.c.is_default,
    unique=True,
    postgresql_where=profile.c.is_default,
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("profile", Text, comment="Account name of the profile; NULL = the default profile."),
    Column("to_addrs", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("cc_addrs", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("bcc_addrs", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("subject", Text, nullable=False, server_default=""),
    Column("body_text", Text, nullable=False, server_default=""),
    Column("body_html", Text),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Column("not_before", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("idempotency_key", Text),
    Column("kind", Text, nullable=False, server_default="notification"),
    Column("status", Text, nullable=False, server_default="pending"),
    Column(
        "status_reason",
        Text,
        server_default="queued",
        comment="Why the message waits or failed, in words.",
    ),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("smtp_response", Text),
    Column("message_id", Text, comment="Message-ID header, generated once, reused on retries."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    # The lease of the worker that claimed the row (status 'sending').
    Column("claimed_by", Text),
    Column("claimed_at", DateTime(timezone=True)),
    Column("lease_expires_at", DateTime(timezone=True)),
    # Filled by the database, so row-level security can show a producer its own rows only.
    Column(
        "enqueued_by",
        Text,
        nullable=False,
        server_default=text("CURRENT_USER"),
        comment="Database role that inserted the message (docs/security.md).",
    ),
    UniqueConstraint("idempotency_key"),
    CheckConstraint(
        "cardinality(to_addrs) + cardinality(cc_addrs) + cardinality(bcc_addrs) > 0",
        name="has_recipient",
    ),
    CheckConstraint(
        "array_position(to_addrs, NULL) IS NULL AND array_position(cc_addrs, NULL) IS NULL"
        " AND array_position(bcc_addrs, NULL) IS NULL",
        name="no_null_recipient",
    ),
    CheckConstraint(_one_of("status", MESSAGE_STATUSES), name="status"),
    CheckConstraint(_one_of("kind", MESSAGE_KINDS), name="kind"),
    CheckConstraint("priority >= 0", name="priority_not_negative"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    CheckConstraint("jsonb_typeof(headers) = 'object'", name="headers_object"),
    CheckConstraint("idempotency_key <> ''", name="idempotency_key_not_empty"),
    CheckConstraint("profile <> ''", name="profile_not_empty"),
    CheckConstraint(
        "expires_at IS NULL OR not_before IS NULL OR expires_at > not_before",
        name="expires_after_not_before",
    ),
    CheckConstraint(
        """NOT jsonb_path_exists(headers, '$.* ? (@.type() != "string")')""",
        name="header_values_are_text",
    ),
    # Caps count sent_at: only a sent message has one.
    CheckConstraint("(sent_at IS NOT NULL) = (status = 'sent')", name="sent_at_when_sent"),
    sane_time("not_before", end=PRODUCER_TIMES_END),
    sane_time("expires_at", end=PRODUCER_TIMES_END),
    *[
        sane_time(column, end=WORKER_TIMES_END)
        for column in (
            "next_attempt_at",
            "created_at",
            "sent_at",
            "claimed_at",
            "lease_expires_at",
        )
    ],
    comment="Messages to send. Other services insert here, inside their own transactions.",
)

# The claim reads only this index: it holds due work alone, so sent history costs nothing.
Index(
    "ix_outbox_pending",
    outbox.c.profile,
    outbox.c.priority.desc(),
    outbox.c.id,
    postgresql_where=outbox.c.status == "pending",
)
# Caps count what a profile sent in the last 24 hours: a range scan of this index.
Index(
    "ix_outbox_sent",
    outbox.c.profile,
    outbox.c.sent_at,
    postgresql_where=outbox.c.sent_at.is_not(None),
)
# The console's queue page: newest first by (created_at, id), a keyset page at a time, with
# or without a status filter (migration 0008).
Index("ix_outbox_created", outbox.c.created_at, outbox.c.id)
Index("ix_outbox_status_created", outbox.c.status, outbox.c.created_at, outbox.c.id)
Index(
    "ix_outbox_leased",
    outbox.c.lease_expires_at,
    postgresql_where=outbox.c.status == "sending",
)

attachment = Table(
    "attachment",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "outbox_id",
        BigInteger,
        ForeignKey(outbox.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("filename", Text, nullable=False),
    Column("content_type", Text, nullable=False, server_default="application/octet-stream"),
    Column("content", LargeBinary, nullable=False),
    CheckConstraint("filename <> ''", name="filename_not_empty"),
    CheckConstraint("content_type LIKE '%_/_%'", name="content_type_shape"),
    Index(None, "outbox_id"),
    comment="Files attached to outbox messages, inserted in the message's transaction.",
)

attempt = Table(
    "attempt",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "outbox_id",
        BigInteger,
        ForeignKey(outbox.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt_no", Integer, nullable=False),
    Column("profile", Text),
    Column("worker_id", Text),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", Text, comment="sent, partial, retry, failed, deferred or interrupted."),
    Column("smtp_code", SmallInteger),
    Column("smtp_text", Text),
    Column("tls_version", Text),
    Column("error", Text),
    Column(
        "recipients",
        JSONB,
        nullable=False,
        server_default=text("'{}'::jsonb"),
        comment="Per-recipient result: address -> {code, text}.",
    ),
    Index(None, "outbox_id", "attempt_no"),
    sane_time("started_at", end=WORKER_TIMES_END),
    sane_time("finished_at", end=WORKER_TIMES_END),
    comment="One row per delivery attempt of an outbox message.",
)

# Which producer roles may send through which profile (docs/security.md). No row at all: every
# producer may use every profile; once there is one, a producer may use only the profiles
# granted to it or to a role it is a member of.
profile_grant = Table(
    "profile_grant",
    metadata,
    Column(
        "profile",
        Text,
        ForeignKey(profile.c.name, ondelete="CASCADE", onupdate="CASCADE"),
        primary_key=True,
    ),
    Column("grantee", Text, primary_key=True, comment="Database role (or group role) name."),
    CheckConstraint("grantee <> ''", name="grantee_not_empty"),
    comment="Producer roles allowed to send through a profile; none at all: every role may.",
)

# An OAuth profile's tokens: written by `profiles authorize` and by the worker that refreshes
# them. Workers share the access token: the one that finds it expiring refreshes it while
# holding this row (FOR UPDATE), the others wait and take the new one.
oauth_grant = Table(
    "oauth_grant",
    metadata,
    Column(
        "profile_id",
        Integer,
        ForeignKey(profile.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("refresh_token_encrypted", LargeBinary, comment="Fernet token; NULL for app-only."),
    Column("access_token_encrypted", LargeBinary, comment="Fernet token of the access token."),
    Column("access_expires_at", DateTime(timezone=True)),
    Column("scopes", Text, nullable=False, server_default=""),
    Column("authorized_by", Text, comment="The account that signed in, as the provider named it."),
    Column("authorized_at", DateTime(timezone=True)),
    Column("refreshed_at", DateTime(timezone=True)),
    Column("refresh_count", BigInteger, nullable=False, server_default=text("0")),
    sane_time("access_expires_at", end=WORKER_TIMES_END),
    sane_time("authorized_at", end=WORKER_TIMES_END),
    sane_time("refreshed_at", end=WORKER_TIMES_END),
    comment="OAuth 2.0 tokens of profiles that sign in with auth_method 'oauth2'.",
)

# When the database server the workers use came up, as they saw it. Leases are reclaimed only
# a lease after that: while the server was down or failing over, no worker could renew one.
lease_clock = Table(
    "lease_clock",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column(
        "server_started",
        DateTime(timezone=True),
        nullable=False,
        comment=(
            "pg_postmaster_start_time() of the server last seen; another one means a"
            " restart or a failover."
        ),
    ),
    Column("up_since", DateTime(timezone=True), nullable=False),
    CheckConstraint("id", name="single_row"),
    comment="One row: since when the workers have seen the current database server up.",
)

# The people who may sign in to the web console (`mailworker console users add`). The password
# is kept as an Argon2id hash (worker/console/auth.py), never as itself.
console_user = Table(
    "console_user",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False, comment="The login name; how the audit log names them."),
    Column("role", Text, nullable=False, comment="admin: may change things; viewer: may look."),
    Column("password_hash", Text, nullable=False, comment="Argon2id hash in PHC string form."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_login_at", DateTime(timezone=True)),
    UniqueConstraint("name"),
    CheckConstraint("name <> ''", name="name_not_empty"),
    CheckConstraint(_one_of("role", CONSOLE_ROLES), name="role"),
    comment="People who may sign in to the web console, and their role.",
)
