"""Alembic environment: runs the migrations in the service's schema over an async connection.

Every revision creates its objects in ``op.get_context().version_table_schema``, the configured
schema, so one set of migrations serves any schema name.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from worker.db import engine_for_url, resolve_database_url
from worker.migrate import comparison_options
from worker.models import metadata
from worker.settings import load_settings

config = context.config


def _run(connection: Connection, schema: str) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(connection=connection, target_metadata=metadata, **comparison_options(schema))
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = config.attributes.get("url")
    schema = config.attributes.get("schema")
    if url is None or schema is None:
        settings = load_settings()
        url = url or resolve_database_url(settings)
        schema = schema or settings.db_schema
    engine = engine_for_url(url)  # libpq parameters mapped as for every other connection
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run, schema)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `mailworker migrate`")
asyncio.run(_run_online())
