"""The claim and the result batch run on asyncpg's own connection (worker.driver).

What they must keep from SQLAlchemy's execution path: the configured schema, the caller's
transaction, errors as SQLAlchemy reports them (so outages and refused values are told
apart as before), and a broken connection that leaves the pool. Real PostgreSQL throughout;
a broken connection is a backend the server terminated.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from worker.db import create_engine
from worker.migrate import upgrade_async
from worker.outcomes import Claimed, Outcome
from worker.repository import Repository
from worker.retry import PauseProfile
from worker.settings import Settings

pytestmark = pytest.mark.timeout(60)

WORKER = "w-driver"


@pytest.fixture
async def post_engine(
    empty_database_url: str, secret_key: str, tmp_path: Any
) -> AsyncIterator[AsyncEngine]:
    """The worker's engine on a database whose tables live in the schema ``post``."""
    await upgrade_async(empty_database_url, "post")
    engine = _worker_engine(empty_database_url, secret_key, tmp_path)
    yield engine
    await engine.dispose()


def _worker_engine(url: str, secret_key: str, tmp_path: Any) -> AsyncEngine:
    settings = Settings(
        database_url=url, secret_key=secret_key, data_dir=tmp_path / "data", db_schema="post"
    )
    return create_engine(settings)


def _autocommit(engine: AsyncEngine) -> Any:
    return engine.execution_options(isolation_level="AUTOCOMMIT").connect()


async def _add_profile_and_messages(engine: AsyncEngine, count: int) -> list[int]:
    async with engine.begin() as connection:
        repository = Repository(connection)
        await repository.create_profile(
            {
                "name": "biuro",
                "from_address": "biuro@example.pl",
                "host": "127.0.0.1",
                "port": 587,
                "encryption": "starttls",
                "auth_method": "none",
            }
        )
        ids = []
        for number in range(count):
            values = {
                "profile": "biuro",
                "to_addrs": [f"klient{number}@example.pl"],
                "subject": f"Faktura {number}",
                "body_text": "Dzień dobry",
                "headers": {"X-Faktura": str(number)},
            }
            message_id, _ = await repository.insert_message(values)
            ids.append(message_id)
        return ids


async def _claim(connection: AsyncConnection) -> list[Claimed]:
    return await Repository(connection).claim_due(
        worker=WORKER,
        lease_seconds=30,
        free_slots=10,
        per_connection=10,
        max_message_bytes=1_000_000,
    )


def _sent(message: Claimed, **values: Any) -> Outcome:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "message_id": message.id,
        "profile": message.profile.name,
        "attempt_no": message.attempts,
        "worker": WORKER,
        "started_at": now,
        "finished_at": now,
        "attempt_outcome": "sent",
        "status": "sent",
        "status_reason": "sent",
        "smtp_response": "250 2.0.0 OK",
        "sent_at": now,
        "force": True,
        "smtp_code": 250,
        "smtp_text": "2.0.0 OK",
        "recipients": {message.to_addrs[0]: {"code": 250, "text": "2.0.0 OK"}},
        **values,
    }
    return Outcome(**fields)


async def _statuses(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT id, status FROM post.outbox"))
        return {int(message_id): status for message_id, status in result}


async def test_a_claim_and_its_results_use_the_configured_schema(post_engine: AsyncEngine) -> None:
    """Claimed from ``post.outbox`` with the values SQLAlchemy gives (headers a dict), and
    recorded into ``post.outbox`` and ``post.attempt``."""
    ids = await _add_profile_and_messages(post_engine, 2)

    async with _autocommit(post_engine) as connection:
        claimed = await _claim(connection)
        assert ids == [message.id for message in claimed]
        assert {"X-Faktura": "0"} == claimed[0].headers
        assert ["klient0@example.pl"] == claimed[0].to_addrs
        assert "biuro@example.pl" == claimed[0].profile.from_address
        await Repository(connection).record_outcomes([_sent(m) for m in claimed])

    assert {ids[0]: "sent", ids[1]: "sent"} == await _statuses(post_engine)
    async with post_engine.connect() as connection:
        stored = await connection.execute(
            text("SELECT recipients::text FROM post.attempt ORDER BY outbox_id")
        )
        recipients = [json.loads(value) for (value,) in stored]
    accepted = {"code": 250, "text": "2.0.0 OK"}
    assert [{"klient0@example.pl": accepted}, {"klient1@example.pl": accepted}] == recipients


async def test_a_claim_in_a_transaction_not_yet_begun_is_refused(
    post_engine: AsyncEngine,
) -> None:
    """SQLAlchemy begins with its first statement: a driver statement before it would commit
    on its own, so it is refused rather than run outside the caller's block."""
    await _add_profile_and_messages(post_engine, 1)

    async with post_engine.begin() as connection:
        with pytest.raises(RuntimeError, match="autocommit connection"):
            await _claim(connection)


async def test_a_claim_joins_the_transaction_it_runs_in(post_engine: AsyncEngine) -> None:
    """After a statement through SQLAlchemy, the claim is part of the transaction: rolled
    back with it, the row is due again."""
    [message_id] = await _add_profile_and_messages(post_engine, 1)

    async with post_engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(text("SELECT 1"))
        assert [message_id] == [message.id for message in await _claim(connection)]
        await transaction.rollback()

    assert {message_id: "pending"} == await _statuses(post_engine)


async def test_a_batch_is_written_whole_or_not_at_all(post_engine: AsyncEngine) -> None:
    """The last statement of a batch (a profile's pause) is refused: the rows and attempt
    records written before it in the batch are rolled back with it, so the batch can be
    written again without recording an attempt twice."""
    [message_id] = await _add_profile_and_messages(post_engine, 1)
    async with _autocommit(post_engine) as connection:
        [message] = await _claim(connection)
    until = datetime.now(UTC) + timedelta(minutes=5)
    refused_pause = PauseProfile(until=until, reason="535 login refused\x00", hint=None)

    async with _autocommit(post_engine) as connection:
        with pytest.raises(DBAPIError) as raised:
            await Repository(connection).record_outcomes([_sent(message, pause=refused_pause)])

    assert raised.value.orig is not None
    assert str(getattr(raised.value.orig, "sqlstate", "")).startswith("22")
    assert {message_id: "sending"} == await _statuses(post_engine)
    async with post_engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM post.attempt"))
    assert 0 == count


async def test_a_refused_value_is_reported_as_sqlalchemy_reports_it(
    post_engine: AsyncEngine,
) -> None:
    """A NUL in a text: a DBAPIError carrying PostgreSQL's SQLSTATE (class 22), and the
    connection stays in the pool: it still works."""
    await _add_profile_and_messages(post_engine, 1)
    async with _autocommit(post_engine) as connection:
        [message] = await _claim(connection)
        with pytest.raises(DBAPIError) as raised:
            await Repository(connection).record_outcomes([_sent(message, smtp_text="OK\x00")])
        assert not raised.value.connection_invalidated
        assert str(getattr(raised.value.orig, "sqlstate", "")).startswith("22")
        await Repository(connection).record_outcomes([_sent(message)])

    assert {message.id: "sent"} == await _statuses(post_engine)


async def test_a_broken_connection_is_reported_and_leaves_the_pool(
    post_engine: AsyncEngine, empty_database_url: str
) -> None:
    """The server ends the backend under a pooled connection: the claim raises an error the
    worker counts as an outage, and the next claim gets a new connection that works."""
    [message_id] = await _add_profile_and_messages(post_engine, 1)
    async with _autocommit(post_engine) as connection:
        backend = await connection.scalar(text("SELECT pg_backend_pid()"))
        await _terminate(empty_database_url, backend)
        with pytest.raises(DBAPIError) as raised:
            await _claim(connection)
    assert raised.value.connection_invalidated
    assert isinstance(raised.value.orig, OSError | asyncpg.InterfaceError | asyncpg.PostgresError)

    async with _autocommit(post_engine) as connection:
        assert backend != await connection.scalar(text("SELECT pg_backend_pid()"))
        assert [message_id] == [message.id for message in await _claim(connection)]


async def _terminate(url: str, backend: int) -> None:
    """End ``backend`` from a connection of its own; wait until it is gone."""
    outside = create_async_engine(url, poolclass=NullPool)
    try:
        async with outside.connect() as other:
            ended = await other.scalar(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backend}
            )
        assert ended
    finally:
        await outside.dispose()


async def test_a_replayed_batch_stores_each_attempt_once(post_engine: AsyncEngine) -> None:
    """A journal's batch written twice, one of its messages deleted meanwhile: one attempt
    record for the other, and no error for the deleted one."""
    ids = await _add_profile_and_messages(post_engine, 2)
    async with _autocommit(post_engine) as connection:
        outcomes = [_sent(message) for message in await _claim(connection)]
        await connection.execute(text("DELETE FROM post.outbox WHERE id = :id"), {"id": ids[1]})
        for _ in range(2):
            await Repository(connection).record_outcomes(outcomes, replayed=True)

    assert {ids[0]: "sent"} == await _statuses(post_engine)
    async with post_engine.connect() as connection:
        stored = (await connection.execute(text("SELECT outbox_id FROM post.attempt"))).all()
    assert [(ids[0],)] == stored


@pytest.mark.parametrize(("cache", "kept"), [(None, 1), ("0", 0)], ids=["cache", "no-cache"])
async def test_prepared_statement_cache_size_0_keeps_no_claim_prepared(
    post_engine: AsyncEngine,
    empty_database_url: str,
    secret_key: str,
    tmp_path: Any,
    *,
    cache: str | None,
    kept: int,
) -> None:
    """``?prepared_statement_cache_size=0`` (behind a pooler) reaches asyncpg's own cache
    too: the claim, run on the driver, leaves no statement prepared on the server."""
    await _add_profile_and_messages(post_engine, 1)
    url = empty_database_url
    if cache is not None:
        query = {"prepared_statement_cache_size": cache}
        url = make_url(url).update_query_dict(query).render_as_string(hide_password=False)
    engine = _worker_engine(url, secret_key, tmp_path)
    try:
        async with _autocommit(engine) as connection:
            assert 1 == len(await _claim(connection))
            prepared = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_prepared_statements"
                    " WHERE statement LIKE '%FOR UPDATE SKIP LOCKED%'"
                    " AND statement NOT LIKE '%pg_prepared_statements%'"  # this query
                )
            )
    finally:
        await engine.dispose()
    assert kept == prepared
