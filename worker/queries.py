"""Every SQL statement the service runs, one named builder each.

Only :mod:`worker.repository` calls these. Statements name the declared schema ``mail``; the
engine translates it to the configured one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Insert, Select, Update, delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.expression import Executable

from worker.models import attachment, outbox, profile

__all__ = [
    "clear_default_profile",
    "delete_profile",
    "insert_attachments",
    "insert_message",
    "insert_profile",
    "message_id_by_idempotency_key",
    "profile_exists",
    "select_default_profile",
    "select_profile_by_name",
    "select_profiles",
    "set_default_profile",
    "update_profile",
]


# --- profiles --------------------------------------------------------------------------------


def select_profiles() -> Select[Any]:
    """All profiles, by account name."""
    return select(profile).order_by(profile.c.name)


def select_profile_by_name(name: str) -> Select[Any]:
    """The profile with this account name."""
    return select(profile).where(profile.c.name == name)


def select_default_profile() -> Select[Any]:
    """The profile marked as default, if any."""
    return select(profile).where(profile.c.is_default)


def profile_exists(name: str) -> Select[Any]:
    """Whether a profile with this account name exists."""
    return select(exists().where(profile.c.name == name))


def insert_profile(values: Mapping[str, Any]) -> Executable:
    """A new profile; returns its id."""
    return insert(profile).values(**values).returning(profile.c.id)


def update_profile(name: str, values: Mapping[str, Any]) -> Executable:
    """Change some fields of a profile; returns its id (no row: no such profile)."""
    return (
        update(profile)
        .where(profile.c.name == name)
        .values(**values, updated_at=func.now())
        .returning(profile.c.id)
    )


def delete_profile(name: str) -> Executable:
    """Remove a profile; returns its id (no row: no such profile)."""
    return delete(profile).where(profile.c.name == name).returning(profile.c.id)


def clear_default_profile() -> Update:
    """No profile is the default any more."""
    return update(profile).where(profile.c.is_default).values(is_default=False)


def set_default_profile(name: str) -> Executable:
    """Make this profile the default; returns its id (no row: no such profile)."""
    return (
        update(profile)
        .where(profile.c.name == name)
        .values(is_default=True, updated_at=func.now())
        .returning(profile.c.id)
    )


# --- outbox ----------------------------------------------------------------------------------


def insert_message(values: Mapping[str, Any]) -> Executable:
    """A new outbox row; returns its id, or no row when its idempotency key is taken."""
    return (
        pg_insert(outbox)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
        .returning(outbox.c.id)
    )


def message_id_by_idempotency_key(key: str) -> Select[Any]:
    """The id of the message enqueued earlier with this idempotency key."""
    return select(outbox.c.id).where(outbox.c.idempotency_key == key)


def insert_attachments() -> Insert:
    """Attachments of one message (executed with a list of rows)."""
    return insert(attachment)
