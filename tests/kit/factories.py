"""Stored-profile objects for pure tests, built from one set of defaults."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from worker.operations import ProfileStatus
from worker.profiles import Profile

if TYPE_CHECKING:
    from tests.kit.smtp_server import SmtpTestServer

__all__ = ["make_profile", "profile_status", "server_profile"]


def make_profile(**overrides: Any) -> Profile:
    """A WP-like profile as the database would return it; pass only what a test cares about."""
    fields: dict[str, Any] = {
        "id": 1,
        "name": "konto",
        "enabled": True,
        "from_address": "jankowalski@wp.pl",
        "display_name": "",
        "reply_to": None,
        "description": "",
        "server_type": "smtp",
        "host": "smtp.wp.pl",
        "port": 465,
        "encryption": "ssl",
        "auth_method": "login",
        "login": "jankowalski",
        "password_encrypted": None,
        "verify_tls": True,
        "ca_bundle": None,
        "daily_cap": None,
        "max_connections": 2,
        "timeout_seconds": 60,
        "is_default": True,
        "preset": None,
    }
    return Profile(**{**fields, **overrides})


def server_profile(server: SmtpTestServer, **overrides: Any) -> Profile:
    """A profile that logs in to a kit server over implicit TLS as ``SMTP_LOGIN``, trusting
    the test CA, without a database (for a :class:`worker.smtp.ConnectionPool` of its own)."""
    from tests.kit.smtp_fixtures import SMTP_LOGIN  # noqa: PLC0415 - pure tests need no server

    return make_profile(
        **{
            "host": server.hostname,
            "port": server.port,
            "encryption": "ssl",
            "login": SMTP_LOGIN,
            "ca_bundle": None if server.cert_bundle is None else str(server.cert_bundle),
            "timeout_seconds": 5,
            **overrides,
        }
    )


def profile_status(name: str = "wp", *, checked_at: datetime, **values: Any) -> ProfileStatus:
    """A row of ``status``'s profile overview: an active profile with nothing sent or waiting
    and no cap, read at ``checked_at``, changed by ``values``."""
    base: dict[str, Any] = {
        "name": name,
        "is_default": False,
        "enabled": True,
        "paused_until": None,
        "pause_reason": None,
        "pause_hint": None,
        "daily_cap": None,
        "daily_recipient_cap": None,
        "per_minute_cap": None,
        "pending": 0,
        "oldest_pending_at": None,
        "sending": 0,
        "sending_recipients": 0,
        "sent_24h": 0,
        "recipients_24h": 0,
        "sent_last_minute": 0,
        "failed_24h": 0,
        "cap_frees_at": None,
        "checked_at": checked_at,
    }
    return ProfileStatus(**{**base, **values})
