"""Putting the chaos run's messages into the outbox, as a caller would, through any outage.

Message ``n`` goes to ``r<n>@example.com`` with the idempotency key ``chaos-<n>``. A batch is
one transaction of plain SQL, ``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING``; when the
database goes away mid-batch the batch is simply tried again, and the keys make sure a batch
whose COMMIT did get through is not inserted twice. :class:`Feed` keeps the id of every row
it knows to be committed: the rows the run must account for at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import Text

from worker.db import DATABASE_ERRORS

__all__ = ["Feed", "Planned", "plan"]

_INSERT = text(
    "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text, idempotency_key)"
    " VALUES (:profile, :to_addrs, :subject, :body_text, :idempotency_key)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
).bindparams(bindparam("to_addrs", type_=ARRAY(Text)))
_IDS = text(
    "SELECT idempotency_key, id FROM mail.outbox WHERE idempotency_key = ANY(:keys)"
).bindparams(bindparam("keys", type_=ARRAY(Text)))
BODY = "Dzień dobry,\n\nto jest wiadomość próbna przebiegu chaosu numer {n}.\n\nPozdrawiamy\n"


@dataclass(frozen=True)
class Planned:
    number: int
    profile: str

    @property
    def key(self) -> str:
        return f"chaos-{self.number}"

    def row(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "to_addrs": [f"r{self.number}@example.com"],
            "subject": f"Przebieg chaosu {self.number}",
            "body_text": BODY.format(n=self.number),
            "idempotency_key": self.key,
        }


def plan(messages: int, *, capped: int, main_profile: str, capped_profile: str) -> list[Planned]:
    """``messages`` in order; ``capped`` of them, spread evenly, for the capped profile."""
    stride = max(1, messages // max(1, capped))
    planned, left = [], capped
    for number in range(messages):
        is_capped = left > 0 and number % stride == stride // 2
        left -= is_capped
        planned.append(Planned(number, capped_profile if is_capped else main_profile))
    return planned


class Feed:
    """Inserts planned messages in batches, retrying each batch until it is committed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.committed: dict[int, int] = {}  # message number -> outbox id
        self.retried_batches = 0

    async def insert(self, batch: Sequence[Planned]) -> None:
        while True:
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(_INSERT, [message.row() for message in batch])
                    rows = await connection.execute(_IDS, {"keys": [m.key for m in batch]})
                    ids = {key: id_ for key, id_ in rows}
            except DATABASE_ERRORS:
                self.retried_batches += 1
                await asyncio.sleep(0.2)  # the database is restarting: try the batch again
                continue
            for message in batch:
                self.committed[message.number] = ids[message.key]
            return

    async def insert_over(
        self, messages: Sequence[Planned], *, seconds: float, batch_size: int
    ) -> None:
        """Insert ``messages`` at an even pace so that the last batch goes in after ``seconds``."""
        batches = [messages[i : i + batch_size] for i in range(0, len(messages), batch_size)]
        started = time.monotonic()
        for index, batch in enumerate(batches):
            due = started + seconds * index / max(1, len(batches) - 1)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self.insert(batch)
