"""The worker's way to its database: one repository per step, and an outage said once.

Every step of the loop and of its background tasks (a claim, a lease renewal, housekeeping)
runs on a connection of its own through :meth:`Database.run`, and whatever it raises never
stops the worker: an unreachable database is noted and logged once per outage, naming the
server; anything else is logged with its traceback. The step is simply tried again at its
next turn. (:mod:`worker.db` makes the engine; :mod:`worker.database_errors` words errors.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.database_errors import explain, is_permission_denied, is_unreachable, where
from worker.db import DATABASE_ERRORS
from worker.errors import ConfigurationError
from worker.migrate import schema_problem
from worker.repository import Repository

__all__ = ["Database"]

# The loop's logger: outages and failed steps are the worker's own events.
log = structlog.get_logger("worker")

T = TypeVar("T")
D = TypeVar("D")


class Database:
    """The database as the worker's steps use it; ``url`` names the server in what it says,
    ``on_back`` is called when the database answers again after an outage."""

    def __init__(self, engine: AsyncEngine, *, url: str, on_back: Callable[[], None]) -> None:
        self._engine = engine
        # Single statements that are their own transaction: no BEGIN and COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._url = url
        self._on_back = on_back
        self._down = False

    @contextlib.asynccontextmanager
    async def repository(self, *, transaction: bool = False) -> AsyncIterator[Repository]:
        """A repository on a connection of its own; what it raises is the caller's.

        ``transaction``: its statements commit together at the end of the block; otherwise
        each statement is a transaction of its own.
        """
        connect = self._engine.begin() if transaction else self._autocommit.connect()
        async with connect as connection:
            yield Repository(connection)

    async def run(
        self,
        step: str,
        work: Callable[[Repository], Awaitable[T]],
        *,
        default: D,
        transaction: bool = False,
    ) -> T | D:
        """What ``work`` returns from a repository of its own; ``default`` if it raised.

        An outage is noted and said once; anything else is logged as ``{step}_failed``.
        """
        try:
            async with self.repository(transaction=transaction) as repository:
                result = await work(repository)
        except DATABASE_ERRORS as exc:
            self._unavailable(exc)
            return default
        except Exception:  # whatever it is, the step is tried again at its next turn
            log.exception(f"{step}_failed")
            return default
        self._available()
        return result

    async def wait_for_schema(self, schema: str, stop: asyncio.Event) -> None:
        """Until the database answers; then refuse a database without the worker's schema.

        An unreachable database is waited for (a worker may start before its database); one
        that refuses us (a wrong password, no such database, never migrated) needs a person,
        so the worker stops and says what to do (:class:`ConfigurationError`).
        """
        delay = 0.5
        while not stop.is_set():
            try:
                async with self.repository() as repository:
                    revision = await repository.schema_revision()
            except DATABASE_ERRORS as exc:
                if is_permission_denied(exc):
                    # A role granted as before version 0005 of docs/security.md: go on unchecked.
                    log.warning("schema_version_unreadable", error=explain(exc, self._url))
                    return
                if not is_unreachable(exc):
                    raise ConfigurationError(explain(exc, self._url)) from None
                self._unavailable(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(10.0, delay * 2)
                continue
            self._available()
            problem = schema_problem(revision, schema=schema)
            if problem is not None:
                raise ConfigurationError(f"{where(self._url)}: {problem}")
            return

    def _unavailable(self, exc: BaseException) -> None:
        if not self._down:  # said once per outage, naming the server
            log.warning("database_unavailable", error=explain(exc, self._url))
        self._down = True

    def _available(self) -> None:
        if self._down:
            log.info("database_available")
            self._on_back()
        self._down = False
