"""Connecting to PostgreSQL: the URL to use and the engine every part of the service shares."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.embedded_db import start_embedded_postgres
from worker.models import DECLARED_SCHEMA
from worker.settings import Settings

__all__ = [
    "DATABASE_ERRORS",
    "async_url",
    "asyncpg_dsn",
    "create_engine",
    "resolve_database_url",
]

# What the database (or the way to it) raises when it is down, restarting or unreachable.
DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


def resolve_database_url(settings: Settings) -> str:
    """``DATABASE_URL`` if set, otherwise the embedded server's (started on demand)."""
    if settings.database_url is not None:
        return async_url(settings.database_url.get_secret_value())
    return start_embedded_postgres(settings.data_dir)


def async_url(url: str) -> str:
    """Any PostgreSQL URL, as the asyncpg driver URL SQLAlchemy needs."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """The same URL as plain asyncpg takes it (for LISTEN, which SQLAlchemy does not wrap)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An engine whose queries name the configured schema instead of the declared ``mail``.

    Pooled connections are not pinged before use: that is a round trip on every transaction
    of a busy worker. After a database restart the first statement fails instead, as any
    outage does (and is handled), and SQLAlchemy drops the whole pool on that disconnect.
    """
    return create_async_engine(
        url or resolve_database_url(settings),
        execution_options={"schema_translate_map": {DECLARED_SCHEMA: settings.db_schema}},
    )
