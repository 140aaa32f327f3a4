"""Connecting to PostgreSQL: the URL to use and the engine every part of the service shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.database_url import ENGINE_URL, database_target, libpq_url, with_scheme
from worker.embedded_db import DATABASE_NAME, start_embedded_postgres
from worker.models import DECLARED_SCHEMA
from worker.settings import Settings

__all__ = [
    "DATABASE_ERRORS",
    "async_url",
    "asyncpg_dsn",
    "create_engine",
    "embedded_database_url",
    "engine_for_url",
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
    """Any accepted URL under the ``postgresql+asyncpg://`` scheme, the rest as given.

    Connect with :func:`engine_for_url` (or :func:`create_engine`), which maps its libpq
    parameters; ``create_async_engine`` alone would pass them to asyncpg as arguments.
    """
    return with_scheme(url, "postgresql+asyncpg")


def asyncpg_dsn(url: str) -> str:
    """The same URL as libpq takes it: what the listener (and psql, pg_dump) connect with.

    The listener maps the parameters a DSN cannot carry to asyncpg (``connect_timeout``).
    """
    return libpq_url(url)


def engine_for_url(url: str, **options: Any) -> AsyncEngine:
    """An engine on any accepted URL, its libpq parameters given to asyncpg as the listener
    gives them; ``options`` go to ``create_async_engine``."""
    target = database_target(url)
    target.check_files()
    return create_async_engine(ENGINE_URL, connect_args=target.engine_connect_args(), **options)


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An engine whose queries name the configured schema instead of the declared ``mail``.

    Pooled connections are not pinged before use: that is a round trip on every transaction
    of a busy worker. After a database restart the first statement fails instead, as any
    outage does (and is handled), and SQLAlchemy drops the whole pool on that disconnect.
    """
    return engine_for_url(
        url or resolve_database_url(settings),
        execution_options={"schema_translate_map": {DECLARED_SCHEMA: settings.db_schema}},
    )


def embedded_database_url(data_dir: Path) -> str | None:
    """The libpq URL of the embedded server under ``data_dir`` if it is running, else None.

    Read from its ``postmaster.pid`` (PostgreSQL's own record: the process id on line 1, the
    socket folder on line 5, the port on line 4), so nothing is started: a server started
    here would stop again when this process exits.
    """
    try:
        lines = (data_dir / "postgres" / "postmaster.pid").resolve().read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), lines[3].strip(), lines[4].strip()
    except (OSError, ValueError, IndexError):
        return None
    if not (socket_dir and _alive(pid) and Path(socket_dir, f".s.PGSQL.{port}").exists()):
        return None
    url = f"postgresql://postgres@/{DATABASE_NAME}?host={quote(socket_dir, safe='/')}"
    return url if port == "5432" else f"{url}&port={port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (the server's own user, when run by root)
    return True
