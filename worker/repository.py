"""The only code that talks to the database: one method per intent, over one connection.

A :class:`Repository` wraps an ``AsyncConnection`` whose transaction the caller controls, so
an enqueue can join the caller's own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from worker import queries
from worker.profiles import Profile

__all__ = ["Repository"]


class Repository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    # --- profiles ----------------------------------------------------------------------------

    async def list_profiles(self) -> list[Profile]:
        result = await self._connection.execute(queries.select_profiles())
        return [Profile.from_row(row) for row in result.mappings()]

    async def get_profile(self, name: str) -> Profile | None:
        result = await self._connection.execute(queries.select_profile_by_name(name))
        row = result.mappings().one_or_none()
        return None if row is None else Profile.from_row(row)

    async def get_default_profile(self) -> Profile | None:
        result = await self._connection.execute(queries.select_default_profile())
        row = result.mappings().one_or_none()
        return None if row is None else Profile.from_row(row)

    async def profile_exists(self, name: str) -> bool:
        return bool(await self._connection.scalar(queries.profile_exists(name)))

    async def create_profile(self, values: Mapping[str, Any]) -> int:
        return int((await self._connection.execute(queries.insert_profile(values))).scalar_one())

    async def update_profile(self, name: str, values: Mapping[str, Any]) -> bool:
        """Apply ``values`` to the named profile; ``False`` when there is no such profile."""
        result = await self._connection.execute(queries.update_profile(name, values))
        return result.scalar_one_or_none() is not None

    async def remove_profile(self, name: str) -> bool:
        result = await self._connection.execute(queries.delete_profile(name))
        return result.scalar_one_or_none() is not None

    async def make_default_profile(self, name: str) -> bool:
        """Mark the named profile as the only default; ``False`` when there is no such profile."""
        await self._connection.execute(queries.clear_default_profile())
        result = await self._connection.execute(queries.set_default_profile(name))
        return result.scalar_one_or_none() is not None

    # --- outbox ------------------------------------------------------------------------------

    async def insert_message(
        self, values: Mapping[str, Any], attachments: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[int, bool]:
        """Insert a message and its attachments; ``(id, created)``.

        When the idempotency key is already taken nothing is inserted and the existing
        message's id comes back with ``created=False``.
        """
        new_id = (await self._connection.execute(queries.insert_message(values))).scalar()
        if new_id is None:
            key = values["idempotency_key"]
            existing = await self._connection.scalar(queries.message_id_by_idempotency_key(key))
            return int(existing), False
        if attachments:
            await self._connection.execute(
                queries.insert_attachments(),
                [{**row, "outbox_id": new_id} for row in attachments],
            )
        return int(new_id), True
