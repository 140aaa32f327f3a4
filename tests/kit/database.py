"""SQL straight to a test's database, around what the service does: ``await sql(...)`` in async
tests, ``run_sql(...)`` in plain ones (the CLI's tests, whose commands run their own loop).

Each call opens an engine of its own and commits, as a separate client of the database would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql.expression import Executable

from worker.settings import Settings

__all__ = ["execute", "run_execute", "run_sql", "sql"]


def _url(database: str | Settings) -> str:
    if isinstance(database, str):
        return database
    assert database.database_url is not None
    return database.database_url.get_secret_value()


async def execute(database: str | Settings, statement: Executable, params: Any = None) -> list[Any]:
    """Run ``statement`` (Core or ``text()``) in a transaction of its own; the rows it returns."""
    engine = create_async_engine(_url(database))
    try:
        async with engine.begin() as connection:
            result = await connection.execute(statement, params)
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


async def sql(database: str | Settings, statement: str, **params: Any) -> list[Any]:
    """``statement`` as SQL text with ``:name`` parameters."""
    return await execute(database, text(statement), params)


def run_execute(database: str | Settings, statement: Executable, params: Any = None) -> list[Any]:
    """:func:`execute` outside an event loop."""
    return asyncio.run(execute(database, statement, params))


def run_sql(database: str | Settings, statement: str, **params: Any) -> list[Any]:
    """:func:`sql` outside an event loop."""
    return asyncio.run(sql(database, statement, **params))
