"""A claim's rows as the worker holds them: each message with its own profile's settings.

The repository builds one ``Profile`` for rows that carry the same profile values, so these
tests claim rows of two profiles at once and check that no message gets the other's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.models import outbox, profile
from worker.outcomes import Claimed
from worker.repository import Repository


async def _profile(engine: AsyncEngine, name: str, **fields: Any) -> None:
    values = {"name": name, "from_address": f"{name}@firma.pl", "encryption": "none"}
    async with engine.begin() as connection:
        await connection.execute(profile.insert().values(auth_method="none", **values, **fields))


async def _message(engine: AsyncEngine, name: str) -> int:
    values = {"to_addrs": ["anna.nowak@example.pl"], "subject": "Faktura", "body_text": "Dzień"}
    async with engine.begin() as connection:
        inserted = await connection.execute(
            outbox.insert().values(profile=name, **values).returning(outbox.c.id)
        )
        return int(inserted.scalar_one())


async def _claim(engine: AsyncEngine) -> list[Claimed]:
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        return await Repository(connection).claim_due(
            worker="test-claimed-rows",
            lease_seconds=30,
            free_slots=20,
            per_connection=10,
            max_message_bytes=1_000_000,
        )


async def test_each_claimed_row_carries_its_own_profile(engine: AsyncEngine) -> None:
    """Rows of two profiles claimed together: every row has the host and port of its profile."""
    await _profile(engine, "faktury", host="smtp.faktury.pl", port=2525, max_connections=5)
    await _profile(engine, "newsletter", host="smtp.news.pl", port=587, max_connections=5)
    expected = {}
    for number in range(6):
        name = ("faktury", "newsletter")[number % 2]
        expected[await _message(engine, name)] = name

    claimed = await _claim(engine)

    assert expected == {message.id: message.profile.name for message in claimed}
    hosts = {"faktury": ("smtp.faktury.pl", 2525), "newsletter": ("smtp.news.pl", 587)}
    for message in claimed:
        assert hosts[message.profile.name] == (message.profile.host, message.profile.port)


async def test_rows_of_one_profile_share_its_settings(engine: AsyncEngine) -> None:
    """Rows of one profile come back with equal settings, read from the profile's row."""
    await _profile(engine, "faktury", host="smtp.faktury.pl", port=2525)
    ids = {await _message(engine, "faktury") for _ in range(4)}

    claimed = await _claim(engine)

    assert ids == {message.id for message in claimed}
    [profile] = {message.profile for message in claimed}
    assert ("faktury", "smtp.faktury.pl", 2525) == (profile.name, profile.host, profile.port)
