"""Writing attempt results: batched, and kept until the database takes them.

A message the server accepted must never be sent again because its result was lost, so a
result is only dropped after it is written. While the database is unreachable the writer
keeps its batch and tries again with backoff, as it does after a deadlock or any error it
cannot blame on the values. A refusal of the values themselves (a data exception or a
constraint, while the database answers) is not an outage: the batch is then written one
result at a time, and a result refused even alone is written once more with its texts in
plain ASCII, so one odd reply never holds back the others. What is still unwritten at exit
goes to the journal (:mod:`worker.journal`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db import DATABASE_ERRORS
from worker.errors import first_line
from worker.journal import ResultJournal
from worker.outcomes import Outcome
from worker.repository import Repository

__all__ = ["ResultWriter"]

log = structlog.get_logger("worker.results")
# The journal's events at start and exit are the loop's, under its logger as they always were.
_loop_log = structlog.get_logger("worker")


class ResultWriter:
    """Writes the worker's attempt results in batches, in the order they came (:meth:`run`),
    until the database takes them."""

    def __init__(
        self, engine: AsyncEngine, *, max_batch: int = 500, retry_cap: float = 5.0
    ) -> None:
        self._engine = engine
        # Recording results runs its own transaction on the driver (:mod:`worker.driver`).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
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
        """How many results wait to be written."""
        return len(self._queue)

    def held_ids(self) -> set[int]:
        """Messages whose results wait to be written: their rows are still this worker's."""
        return {outcome.message_id for outcome in self._queue}

    def unwritten(self) -> list[Outcome]:
        """Every result not written yet, oldest first."""
        return list(self._queue)

    def put(self, outcome: Outcome) -> None:
        """Queue ``outcome`` to be written; never waits."""
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
            await self.write(batch)
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

    async def replay(self, journal: ResultJournal, *, give_up: asyncio.Event) -> None:
        """Write the results a worker left in ``journal`` at exit (before claiming anything).

        Until they are written, their messages look like rows of a dead worker; written, a
        delivered one is ``sent`` and is never sent again. ``give_up`` set meanwhile leaves
        the rest for the next start.
        """
        for entry in journal.take():
            try:
                if await self.write(entry.outcomes, replayed=True, give_up=give_up):
                    entry.remove()
                    _loop_log.info(
                        "journal_replayed", results=len(entry.outcomes), file=str(entry.path)
                    )
            finally:
                entry.release()

    def journal_unwritten(self, journal: ResultJournal, *, worker: str) -> tuple[int, int]:
        """At exit, with the database out of reach: keep the unwritten results in ``journal``.

        Returns how many were journaled and how many were lost (the journal could not be
        written either: logged with the ids of the messages that were sent).
        """
        unwritten = self.unwritten()
        try:
            path = journal.save(unwritten, worker=worker)
        except OSError as exc:
            _loop_log.error(
                "results_lost",
                count=len(unwritten),
                error=str(exc),
                sent=[o.message_id for o in unwritten if o.status == "sent"],
            )
            return 0, len(unwritten)
        _loop_log.error(
            "results_journaled",
            count=len(unwritten),
            file=str(path),
            hint="the next worker started on this data folder writes them to the database",
        )
        return len(unwritten), 0

    async def write(
        self,
        outcomes: list[Outcome],
        *,
        replayed: bool = False,
        give_up: asyncio.Event | None = None,
    ) -> bool:
        """Write ``outcomes``, waiting out outages; False if ``give_up`` was set first.

        ``replayed``: results from the journal, which may have been written before.
        """
        groups = [outcomes]  # what is left to write, in order
        delay = 0.1
        outage = False
        while groups:
            group = groups[0]
            try:
                async with self._autocommit.connect() as connection:
                    await Repository(connection).record_outcomes(group, replayed=replayed)
            except Exception as exc:  # noqa: BLE001 - told apart below: refusal or outage
                if _refused(exc) and await self._database_answers():
                    groups[:1] = self._smaller(group, exc)
                    continue
                if not outage:
                    log.warning("result_write_failed", error=first_line(exc), waiting=len(group))
                outage = True
                if give_up is not None and give_up.is_set():
                    return False
                await self._back_off(delay)
                delay = min(self._retry_cap, delay * 2)
                continue
            groups.pop(0)
            if outage:
                log.info("result_write_recovered", written=len(group))
                outage = False
        return True

    def _smaller(self, group: list[Outcome], exc: BaseException) -> list[list[Outcome]]:
        """What to try after the database refused ``group``: each result alone, then in ASCII."""
        if len(group) > 1:
            return [[outcome] for outcome in group]
        [outcome] = group
        plain = outcome.in_plain_text()
        if plain != outcome:
            log.warning("result_refused", outbox_id=outcome.message_id, error=first_line(exc))
            return [[plain]]
        log.error(
            "result_not_stored",
            outbox_id=outcome.message_id,
            attempt=outcome.attempt_no,
            status=outcome.status,
            sent_at=None if outcome.sent_at is None else outcome.sent_at.isoformat(),
            error=first_line(exc),
        )
        return []

    async def _database_answers(self) -> bool:
        try:
            async with self._engine.connect() as connection:
                await Repository(connection).ping()
        except DATABASE_ERRORS:
            return False
        return True

    async def _back_off(self, delay: float) -> None:
        self._retry.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._retry.wait(), timeout=delay)


# SQLSTATE classes of a refusal of the data itself (22: data exception, such as a NUL in a
# text; 23: a constraint); trying the same values again cannot succeed. Any other error (a
# lost connection, a deadlock, a missing grant) is waited out and tried again.
_REFUSALS = ("22", "23")


def _refused(exc: BaseException) -> bool:
    """Whether the database refused the values written, rather than failing to take them."""
    if not isinstance(exc, DATABASE_ERRORS):
        return True  # not the database at all: the values cannot be sent as they are
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_REFUSALS)
