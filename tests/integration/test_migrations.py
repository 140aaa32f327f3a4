"""The migrations build exactly the declared schema, and can be undone and redone."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from worker.migrate import comparison_options, downgrade, upgrade
from worker.models import metadata


def _differences(sync_connection: Connection) -> list[object]:
    context = MigrationContext.configure(sync_connection, opts=comparison_options("mail"))
    return list(compare_metadata(context, metadata))


def _tables(sync_connection: Connection, schema: str) -> set[str]:
    return set(inspect(sync_connection).get_table_names(schema=schema))


async def _inspect(url: str, schema: str) -> tuple[list[object], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
            tables = await connection.run_sync(_tables, schema)
            return differences, tables
    finally:
        await engine.dispose()


def test_upgrade_matches_models_and_round_trips(empty_database_url: str) -> None:
    """An empty database upgraded to head equals the models; downgrade and upgrade again."""
    upgrade(empty_database_url, "mail")
    differences, tables = asyncio.run(_inspect(empty_database_url, "mail"))
    assert differences == []
    expected = {"profile", "outbox", "attachment", "attempt", "profile_grant", "lease_clock"}
    expected |= {"oauth_grant", "console_user"}
    assert {*expected, "alembic_version"} == tables

    downgrade(empty_database_url, "mail")
    _, tables = asyncio.run(_inspect(empty_database_url, "mail"))
    assert {"alembic_version"} == tables

    upgrade(empty_database_url, "mail")
    differences, _ = asyncio.run(_inspect(empty_database_url, "mail"))
    assert differences == []


def test_upgrade_into_a_configured_schema(empty_database_url: str) -> None:
    """With another schema name every table lands there and nothing lands in ``mail``."""
    upgrade(empty_database_url, "notifications")

    async def schemas() -> list[str]:
        engine = create_async_engine(empty_database_url)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(
                    text(
                        "SELECT DISTINCT table_schema FROM information_schema.tables"
                        " WHERE table_name = 'outbox'"
                    )
                )
                return [row[0] for row in result]
        finally:
            await engine.dispose()

    assert asyncio.run(schemas()) == ["notifications"]
