"""Stored-profile objects for pure tests, built from one set of defaults."""

from __future__ import annotations

from typing import Any

from worker.profiles import Profile

__all__ = ["make_profile"]


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
