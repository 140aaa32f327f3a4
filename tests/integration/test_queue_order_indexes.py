"""The queue page's pages read an index, however deep: the newest-first order by
``(created_at, id)`` is served by ``ix_outbox_created``, and with a status filter by
``ix_outbox_status_created`` (schema 0008), first page and later ones alike.

A small test table would be read whole by the planner's choice, so sequential and bitmap
scans are switched off for the EXPLAIN (sorting is not): what is checked is that an index
*can* serve the statement as :func:`worker.queries.search_messages` writes it (its order,
its row comparison), which an index or an ORDER BY changed on one side only would break.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from worker import queries
from worker.db import engine_for_url

AFTER = (datetime(2026, 12, 1, 12, 0, tzinfo=UTC), 41)  # a later page's position


async def _plan(database_url: str, **selection: Any) -> str:
    statement = queries.search_messages(
        profile_name=None, kind=None, since=None, recipient_forms=[], limit=51, **selection
    )
    sql = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    engine = engine_for_url(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            await connection.execute(text("SET LOCAL enable_bitmapscan = off"))
            rows = await connection.execute(text(f"EXPLAIN {sql}"))
            return "\n".join(row[0] for row in rows)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("selection", "index"),
    [
        ({"statuses": [], "after": None}, "ix_outbox_created"),
        ({"statuses": [], "after": AFTER}, "ix_outbox_created"),
        ({"statuses": ["failed"], "after": None}, "ix_outbox_status_created"),
        ({"statuses": ["failed"], "after": AFTER}, "ix_outbox_status_created"),
    ],
    ids=["first page", "later page", "failed, first page", "failed, later page"],
)
def test_each_page_is_read_from_an_index_in_its_order(
    database_url: str, selection: dict[str, Any], index: str
) -> None:
    plan = asyncio.run(_plan(database_url, **selection))
    assert f"Index Scan Backward using {index}" in plan, plan
    assert "Sort" not in plan, plan  # the index gives the order; nothing is sorted
