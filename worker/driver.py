"""The hottest statements, run on asyncpg's own connection under SQLAlchemy's pool.

A busy worker claims and records results many times a second. SQLAlchemy's execution path
(cache lookup, schema translation, parameter and row processing, the greenlet hop) cost
more CPU than asyncpg's own work for those few statements. Here a statement of
:mod:`worker.queries` is compiled once per schema into the SQL and the order of its
parameters, and run directly on the pooled connection's asyncpg connection.

The statement itself stays in :mod:`worker.queries`; its values go through the same type
processing SQLAlchemy would apply (a dict for a JSONB parameter is serialized, a JSONB
column is parsed). What asyncpg raises becomes SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError`
carrying asyncpg's error, as SQLAlchemy itself reports it, so callers handle outages and
refused values as before; a connection that broke is invalidated, so the pool does not hand
it out again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import Executable

__all__ = [
    "DriverStatement",
    "driver_statement",
    "execute",
    "execute_once",
    "fetch",
    "transaction",
]

# What asyncpg raises when the server refuses a statement or the connection fails.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class DriverStatement:
    """``statement`` compiled once for asyncpg on a connection whose schema map is ``schemas``."""

    def __init__(
        self, statement: Executable, dialect: Dialect, schemas: Mapping[str | None, str | None]
    ) -> None:
        compiled = (
            statement.compile(
                dialect=dialect, schema_translate_map=dict(schemas), render_schema_translate=True
            )
            if isinstance(statement, ClauseElement)
            else None
        )
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {statement!r}")
        self.sql = compiled.string
        if "__[POSTCOMPILE" in self.sql:  # an IN list SQLAlchemy expands per execution
            raise TypeError("a statement with an expanding parameter cannot be compiled once")
        binds = compiled.binds
        names = list(compiled.positiontup or ())
        # Values written into the statement itself (a literal status, an interval's parts).
        self._fixed = {
            name: binds[name].effective_value for name in names if not binds[name].required
        }
        self._names = names
        self._bind_processors: dict[str, Callable[[Any], Any]] = {}
        for name in names:
            processor = binds[name].type.bind_processor(dialect)
            if processor is not None:
                self._bind_processors[name] = processor
        returned = list(getattr(statement, "exported_columns", ()))
        self.columns = [column.key for column in returned]
        self._row_processors = [column.type.result_processor(dialect, None) for column in returned]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``values`` (by bind name)."""
        arguments = []
        for name in self._names:
            value = values[name] if name in values else self._fixed[name]
            processor = self._bind_processors.get(name)
            arguments.append(value if processor is None or value is None else processor(value))
        return arguments

    def row(self, record: asyncpg.Record) -> tuple[Any, ...]:
        """A returned row with each value as SQLAlchemy would give it."""
        return tuple(
            value if processor is None or value is None else processor(value)
            for value, processor in zip(record.values(), self._row_processors, strict=True)
        )


_compiled: dict[tuple[Callable[[], Executable], tuple[Any, ...]], DriverStatement] = {}


def driver_statement(
    connection: AsyncConnection, build: Callable[[], Executable]
) -> DriverStatement:
    """The statement ``build`` makes, compiled for ``connection``'s schema once per process."""
    schemas = _schemas(connection)
    key = (build, tuple(sorted(schemas.items(), key=repr)))
    statement = _compiled.get(key)
    if statement is None:
        statement = _compiled[key] = DriverStatement(build(), connection.dialect, schemas)
    return statement


def _schemas(connection: AsyncConnection) -> Mapping[str | None, str | None]:
    """The schema names ``connection`` translates (the configured one for ``mail``)."""
    options = connection.sync_engine.get_execution_options()
    if connection.sync_connection is not None:
        options = connection.sync_connection.get_execution_options()
    schemas: Mapping[str | None, str | None] = options.get("schema_translate_map") or {}
    return schemas


async def fetch(
    connection: AsyncConnection, statement: DriverStatement, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows ``statement`` returns for ``values``, run on the driver's connection."""
    driver = await _driver(connection)
    try:
        records = await driver.fetch(statement.sql, *statement.arguments(values))
    except _DRIVER_ERRORS as exc:
        raise await _reported(connection, driver, statement.sql, exc) from exc
    return [statement.row(record) for record in records]


async def execute(
    connection: AsyncConnection, statement: DriverStatement, values: Mapping[str, Any]
) -> None:
    """Run ``statement`` for ``values``; nothing comes back."""
    driver = await _driver(connection)
    try:
        await driver.execute(statement.sql, *statement.arguments(values))
    except _DRIVER_ERRORS as exc:
        raise await _reported(connection, driver, statement.sql, exc) from exc


async def execute_once(connection: AsyncConnection, statement: Executable) -> None:
    """Run ``statement``, its values bound in it: a rare one, compiled for this call."""
    compiled = DriverStatement(statement, connection.dialect, _schemas(connection))
    await execute(connection, compiled, {})


@contextlib.asynccontextmanager
async def transaction(connection: AsyncConnection) -> AsyncIterator[None]:
    """The driver statements of the block commit together (a savepoint inside a transaction)."""
    driver = await _driver(connection)
    block = driver.transaction()
    try:
        await block.start()
    except _DRIVER_ERRORS as exc:
        raise await _reported(connection, driver, "BEGIN", exc) from exc
    try:
        yield
    except BaseException:
        with contextlib.suppress(*_DRIVER_ERRORS):  # a broken connection rolled back already
            await block.rollback()
        raise
    try:
        await block.commit()
    except _DRIVER_ERRORS as exc:
        raise await _reported(connection, driver, "COMMIT", exc) from exc


async def _driver(connection: AsyncConnection) -> asyncpg.Connection:
    """``connection``'s asyncpg connection, where a statement on it cannot escape a transaction.

    SQLAlchemy begins a transaction with its first statement: before that, a statement run
    on the driver would commit on its own although the caller's block has not ended.
    """
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, asyncpg.Connection):
        raise TypeError(f"not an asyncpg connection: {type(driver).__name__}")
    autocommit = getattr(raw.dbapi_connection, "autocommit", False)
    if not autocommit and not driver.is_in_transaction():
        raise RuntimeError(
            "driver statements need an autocommit connection, or a transaction that a"
            " statement through SQLAlchemy has begun"
        )
    return driver


async def _reported(
    connection: AsyncConnection, driver: asyncpg.Connection, sql: str, exc: BaseException
) -> DBAPIError:
    """``exc`` as SQLAlchemy reports a driver's error; a broken connection leaves the pool."""
    broken = driver.is_closed() or not isinstance(exc, asyncpg.PostgresError)
    if broken:
        await connection.invalidate(exc)
    return DBAPIError(sql, None, exc, hide_parameters=True, connection_invalidated=broken)
