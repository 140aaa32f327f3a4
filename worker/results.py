"""Writing attempt results: batched, and kept until the database takes them.

A message the server accepted must never be sent again because its result was lost, so a
result is only dropped after it is written. While the database is unreachable the writer
keeps its batch and tries again with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db import DATABASE_ERRORS
from worker.delivery import Outcome
from worker.repository import Repository

__all__ = ["ResultWriter"]

log = structlog.get_logger("worker.results")


class ResultWriter:
    def __init__(
        self, engine: AsyncEngine, *, max_batch: int = 500, retry_cap: float = 5.0
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._retry_cap = retry_cap
        self._queue: collections.deque[Outcome] = collections.deque()
        self._wake = asyncio.Event()
        self._retry = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def put(self, outcome: Outcome) -> None:
        self._queue.append(outcome)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Write until closed and empty."""
        while not (self._closing and not self._queue):
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue[i] for i in range(min(self._max_batch, len(self._queue)))]
            await self._write_until_done(batch)
            for _ in batch:
                self._queue.popleft()
        self._idle.set()

    async def flushed(self) -> None:
        """Wait until everything put so far is written."""
        await self._idle.wait()

    def retry_now(self) -> None:
        """The database is reachable again: end the back-off and write what waits."""
        self._retry.set()

    def close(self) -> None:
        """Write what is queued, then let :meth:`run` return."""
        self._closing = True
        self._wake.set()

    async def _write_until_done(self, batch: list[Outcome]) -> None:
        delay = 0.1
        failed_before = False
        while True:
            try:
                async with self._engine.begin() as connection:
                    await Repository(connection).record_outcomes(batch)
            except DATABASE_ERRORS as exc:
                if not failed_before:
                    log.warning(
                        "result_write_failed",
                        error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        waiting=len(self._queue),
                    )
                failed_before = True
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry.wait(), timeout=delay)
                delay = min(self._retry_cap, delay * 2)
                continue
            if failed_before:
                log.info("result_write_recovered", written=len(batch))
            return
