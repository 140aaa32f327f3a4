"""Rows as a test needs them before a command runs: profiles, messages, attempts, attachments.

Written straight into the tables (not through the service's API), so a test can set up any
state, also one the service would never make; plain functions, as the CLI's tests are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from tests.kit.database import run_execute
from worker.models import attachment, attempt, outbox, profile

__all__ = [
    "ago",
    "ids",
    "insert_attachment",
    "insert_attempt",
    "insert_message",
    "insert_profile",
    "message_status",
]


def ago(**delta: float) -> Any:
    """``now() - interval``, on the database's clock (like the service's own timestamps)."""
    return func.now() - timedelta(**delta)


def insert_profile(database_url: str, name: str, **fields: Any) -> None:
    """A relay profile (no login) unless ``fields`` say otherwise."""
    values = {
        "name": name,
        "from_address": f"{name}@firma.pl",
        "host": "relay.firma.pl",
        "port": 25,
        "encryption": "none",
        "auth_method": "none",
        **fields,
    }
    run_execute(database_url, profile.insert().values(**values))


def insert_message(database_url: str, **columns: Any) -> int:
    values = {
        "to_addrs": ["anna.nowak@example.pl"],
        "subject": "Faktura FV/2026/12/0042",
        "body_text": "Dzień dobry.",
        **columns,
    }
    [(new_id,)] = run_execute(database_url, outbox.insert().values(**values).returning(outbox.c.id))
    return int(new_id)


def insert_attempt(database_url: str, outbox_id: int, **columns: Any) -> None:
    values = {"outbox_id": outbox_id, "attempt_no": 1, "outcome": "failed", **columns}
    run_execute(database_url, attempt.insert().values(**values))


def insert_attachment(database_url: str, outbox_id: int, filename: str, content: bytes) -> None:
    values = {"outbox_id": outbox_id, "filename": filename, "content": content}
    run_execute(database_url, attachment.insert().values(**values))


def message_status(database_url: str, message_id: int) -> str:
    """The outbox status of message ``message_id``."""
    [(status,)] = run_execute(
        database_url, select(outbox.c.status).where(outbox.c.id == message_id)
    )
    return str(status)


def ids(rows: Sequence[Any]) -> list[int]:
    return sorted(int(row[0]) for row in rows)
