"""Helpers for the operator command tests: run the CLI, write and read rows with plain SQL.

The tests are plain functions because every command runs its own ``asyncio.run``; these
helpers do the same for the few statements a test needs around a command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import create_async_engine

from worker.cli import main
from worker.models import attachment, attempt, outbox, profile

__all__ = [
    "ago",
    "cli",
    "failed",
    "ids",
    "insert_attachment",
    "insert_attempt",
    "insert_message",
    "insert_profile",
    "ok",
    "sql",
]


def cli(env: dict[str, str], *args: str, input: str | None = None, **extra_env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**env, **extra_env}, input=input)


def ok(env: dict[str, str], *args: str, input: str | None = None, **extra_env: str) -> Result:
    result = cli(env, *args, input=input, **extra_env)
    assert result.exit_code == 0, result.output
    return result


def failed(env: dict[str, str], *args: str, **extra_env: str) -> Result:
    """The command ran and ended with a non-zero exit code, not with a crash."""
    result = cli(env, *args, **extra_env)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def ago(**delta: float) -> Any:
    """``now() - interval``, on the database's clock (like the service's own timestamps)."""
    return func.now() - timedelta(**delta)


def _run(database_url: str, statement: Any, params: Any = None) -> list[Any]:
    async def execute() -> list[Any]:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(statement, params)
                return list(result) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(execute())


def sql(database_url: str, statement: str, **params: Any) -> list[Any]:
    return _run(database_url, text(statement), params)


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
    _run(database_url, profile.insert().values(**values))


def insert_message(database_url: str, **columns: Any) -> int:
    values = {
        "to_addrs": ["anna.nowak@example.pl"],
        "subject": "Faktura FV/2026/12/0042",
        "body_text": "Dzień dobry.",
        **columns,
    }
    [(new_id,)] = _run(database_url, outbox.insert().values(**values).returning(outbox.c.id))
    return int(new_id)


def insert_attempt(database_url: str, outbox_id: int, **columns: Any) -> None:
    values = {"outbox_id": outbox_id, "attempt_no": 1, "outcome": "failed", **columns}
    _run(database_url, attempt.insert().values(**values))


def insert_attachment(database_url: str, outbox_id: int, filename: str, content: bytes) -> None:
    values = {"outbox_id": outbox_id, "filename": filename, "content": content}
    _run(database_url, attachment.insert().values(**values))


def ids(rows: Sequence[Any]) -> list[int]:
    return sorted(int(row[0]) for row in rows)
