"""The benchmark's database: a fresh migrated database, its profile, and the rows it sends."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.sink import SmtpSink
from worker.db import async_url
from worker.embedded_db import start_embedded_postgres
from worker.migrate import upgrade
from worker.mime import Sender
from worker.models import attachment, outbox
from worker.repository import Repository

__all__ = [
    "BODY",
    "PROFILE",
    "REPO_ROOT",
    "SENDER",
    "add_profile",
    "admin_scalar",
    "create_database",
    "empty_outbox",
    "fill_history",
    "fresh_database",
    "insert_messages",
    "outbox_statuses",
    "point_profile",
    "row",
    "server_url",
    "subject",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILE = "bench"
SENDER = Sender(address="powiadomienia@example.com", display_name="Bench", reply_to=None)
# About 1 KB of Polish text once rendered (quoted-printable makes it a little longer).
BODY = (
    "Dzień dobry,\n\n"
    + "uprzejmie informujemy, że Twoje zamówienie zostało przyjęte do realizacji. "
    "Przesyłka zostanie nadana w ciągu dwóch dni roboczych, a numer listu przewozowego "
    "otrzymasz w osobnej wiadomości. " * 3 + "\n\nPozdrawiamy,\nZespół obsługi klienta\n"
)


def server_url() -> str:
    """``DATABASE_URL`` (any database on the server), else the embedded PostgreSQL."""
    if os.environ.get("DATABASE_URL"):
        return async_url(os.environ["DATABASE_URL"])
    return start_embedded_postgres(REPO_ROOT / ".data")


def create_database(url: str, name: str) -> str:
    """Drop and create ``name`` beside the database of ``url``; its URL."""

    async def admin() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                await connection.execute(text(f"CREATE DATABASE {name}"))
        finally:
            await engine.dispose()

    asyncio.run(admin())
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def fresh_database(url: str, name: str) -> str:
    """Drop, create and migrate ``name`` beside the database of ``url``; its URL."""
    bench_url = create_database(url, name)
    upgrade(bench_url, "mail")
    return bench_url


async def admin_scalar(url: str, query: str, **values: Any) -> Any:
    """One value from ``query`` run in the server's ``postgres`` database.

    Statistics of the bench database are read from there, so that reading them adds no
    transaction to the database being measured.
    """
    admin_url = make_url(url).set(database="postgres")
    engine = create_async_engine(admin_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(text(query), values)
    finally:
        await engine.dispose()


async def add_profile(engine: AsyncEngine, sink: SmtpSink, connections: int) -> None:
    async with engine.begin() as connection:
        await Repository(connection).create_profile(
            {
                "name": PROFILE,
                "from_address": SENDER.address,
                "display_name": SENDER.display_name,
                "host": sink.host,
                "port": sink.port,
                "encryption": "none",
                "auth_method": "none",
                "max_connections": connections,
                "timeout_seconds": 30,
                "is_default": True,
            }
        )


async def point_profile(engine: AsyncEngine, sink: SmtpSink) -> None:
    """The profile sends to ``sink`` from now on (the workers started after this)."""
    async with engine.begin() as connection:
        await Repository(connection).update_profile(PROFILE, {"port": sink.port})


def subject(number: int) -> str:
    return f"Powiadomienie nr {number}"


def row(number: int) -> dict[str, Any]:
    return {
        "profile": PROFILE,
        "to_addrs": [f"r{number}@example.com"],
        "subject": subject(number),
        "body_text": BODY,
    }


async def insert_messages(
    connection: AsyncConnection, count: int, attached: bytes | None = None
) -> None:
    """``count`` messages; with ``attached``, each carries it as a PDF attachment.

    The attachment's bytes cross the wire once: the database copies them to every message.
    """
    result = await connection.execute(
        outbox.insert().returning(outbox.c.id), [row(i) for i in range(count)]
    )
    if attached is None:
        return
    ids = [message_id for (message_id,) in result]
    await connection.execute(
        text(
            "INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
            " SELECT id, 'faktura.pdf', 'application/pdf', :content"
            " FROM unnest(CAST(:ids AS bigint[])) AS id"
        ).bindparams(bindparam("content", type_=attachment.c.content.type)),
        {"content": attached, "ids": ids},
    )


async def empty_outbox(engine: AsyncEngine, *, after_id: int = 0) -> None:
    """Remove the messages after ``after_id`` (all of them by default) and their attempts."""
    async with engine.begin() as connection:
        if after_id:
            await connection.execute(
                text("DELETE FROM mail.outbox WHERE id > :after"), {"after": after_id}
            )
        else:
            await connection.execute(text("TRUNCATE mail.outbox CASCADE"))


async def outbox_statuses(engine: AsyncEngine, *, after_id: int = 0) -> dict[str, int]:
    """How many messages after ``after_id`` have each status."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT status, count(*) FROM mail.outbox WHERE id > :after GROUP BY status"),
            {"after": after_id},
        )
        return {status: int(count) for status, count in result}


# Delivered mail as the worker leaves it: the message `sent` after one attempt, and
# its attempt record with the recipient's result. Sent times spread evenly over 90 days.
_HISTORY_MESSAGES = """
INSERT INTO mail.outbox (
    profile, to_addrs, subject, body_text, status, status_reason, attempts, next_attempt_at,
    smtp_response, message_id, created_at, sent_at
)
SELECT :profile, ARRAY['h' || n || '@example.com'], 'Powiadomienie nr ' || n, :body,
       'sent', 'sent', 1, t, '250 OK', '<history.' || n || '@example.com>', t,
       t + interval '1 second'
FROM generate_series(1, :rows) AS n,
     LATERAL (SELECT now() - interval '90 days' * (1 - n::float8 / :rows)) AS at(t)
"""
_HISTORY_ATTEMPTS = """
INSERT INTO mail.attempt (
    outbox_id, attempt_no, profile, worker_id, started_at, finished_at, outcome, smtp_code,
    smtp_text, recipients
)
SELECT id, 1, profile, 'history', created_at, sent_at, 'sent', 250, 'OK',
       jsonb_build_object(to_addrs[1], jsonb_build_object('code', 250, 'text', 'accepted'))
FROM mail.outbox WHERE status = 'sent'
"""


async def fill_history(engine: AsyncEngine, rows: int) -> int:
    """Insert ``rows`` sent messages with their attempts, ANALYZE; the last history id."""
    async with engine.begin() as connection:
        await connection.execute(
            text(_HISTORY_MESSAGES), {"profile": PROFILE, "body": BODY, "rows": rows}
        )
        await connection.execute(text(_HISTORY_ATTEMPTS))
        last = await connection.scalar(text("SELECT max(id) FROM mail.outbox"))
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("ANALYZE mail.outbox"))
        await autocommit.execute(text("ANALYZE mail.attempt"))
    return int(last or 0)
