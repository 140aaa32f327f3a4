"""Stored-profile objects for pure tests, built from one set of defaults."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from worker.operations import ProfileStatus
from worker.profiles import Profile

__all__ = ["make_profile", "profile_status"]


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
