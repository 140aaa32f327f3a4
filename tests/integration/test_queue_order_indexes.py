"""The queue page's pages read an index, however deep: the newest-first order by
``(created_at, id)`` is served by ``ix_outbox_created``, and with a status filter by
``ix_outbox_status_created`` (schema 0008), first page and later ones alike.

A small test table would be read whole by the planner's choice, so sequential and bitmap
scans are switched off for the EXPLAIN (sorting is not): what is checked is that an index
*can* serve the statement as :func:`worker.queries.search_messages` writes it (its order,
its row comparison), which an index or an ORDER BY changed on one side only would break.
The statement is the one the repository runs, caught as it is executed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql

from worker.db import engine_for_url
from worker.operations import MessageFilter, MessageKey
from worker.repository import Repository

AFTER = MessageKey(created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC), id=41)  # a later page


async def _plan(database_url: str, selection: MessageFilter) -> str:
    """EXPLAIN of the statement ``Repository.search_messages(selection)`` runs."""
    engine = engine_for_url(database_url)
    ran: list[Any] = []
    try:
        async with engine.begin() as connection:
            event.listen(
                connection.sync_connection,
                "before_execute",
                lambda _connection, statement, *_: ran.append(statement),
            )
            await Repository(connection).search_messages(selection)
            [statement] = ran
            sql = statement.compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
            )
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            await connection.execute(text("SET LOCAL enable_bitmapscan = off"))
            rows = await connection.execute(text(f"EXPLAIN {sql}"))
            return "\n".join(row[0] for row in rows)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("selection", "index"),
    [
        (MessageFilter(limit=51), "ix_outbox_created"),
        (MessageFilter(limit=51, after=AFTER), "ix_outbox_created"),
        (MessageFilter(statuses=("failed",), limit=51), "ix_outbox_status_created"),
        (MessageFilter(statuses=("failed",), limit=51, after=AFTER), "ix_outbox_status_created"),
    ],
    ids=["first page", "later page", "failed, first page", "failed, later page"],
)
def test_each_page_is_read_from_an_index_in_its_order(
    database_url: str, selection: MessageFilter, index: str
) -> None:
    plan = asyncio.run(_plan(database_url, selection))
    assert f"Index Scan Backward using {index}" in plan, plan
    assert "Sort" not in plan, plan  # the index gives the order; nothing is sorted
