"""Waking the worker within milliseconds of a commit: LISTEN on the outbox's channel.

An insert trigger sends ``NOTIFY "<schema>_outbox"``. The listening connection is a plain
asyncpg connection; when it drops it is reopened with backoff, and the worker's poll covers
the gap (a wake-up is also given after every reconnect, in case a notification was missed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from worker.database_errors import explain, where
from worker.database_url import database_target

__all__ = ["Listener", "notify_channel"]

log = structlog.get_logger("worker.listener")


def notify_channel(schema: str) -> str:
    """The channel the insert trigger of the migrations notifies."""
    return f"{schema}_outbox"


class Listener:
    def __init__(self, dsn: str, channel: str, on_notify: Callable[[], None]) -> None:
        """``dsn``: any accepted database URL; its libpq parameters are mapped as the engine's
        are (a wrong one raises :class:`~worker.errors.ConfigurationError` here)."""
        target = database_target(dsn)
        target.check_files()
        self._connect = target.asyncpg_arguments(default_timeout=10)
        self._dsn = dsn  # named in what the listener says, never with its password
        self._channel = channel
        self._on_notify = on_notify
        self._connected = False

    @property
    def connected(self) -> bool:
        """LISTEN is in place: every new row wakes the worker."""
        return self._connected

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set, reconnecting whenever the connection is lost.

        The loss is said once, naming the server, and the return once; not every retry.
        """
        delay = 0.2
        down = False
        while not stop.is_set():
            try:
                await self._listen_once(stop, back=down)
                delay, down = 0.2, False
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                if not down:
                    log.warning("listener_disconnected", error=explain(exc, self._dsn))
                down = True
                await _sleep_or_stop(stop, delay)
                delay = min(10.0, delay * 2)

    async def _listen_once(self, stop: asyncio.Event, *, back: bool) -> None:
        connection = await asyncpg.connect(**self._connect)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(self._channel, lambda *_args: self._on_notify())
            self._connected = True
            if back:
                log.info("listener_connected", channel=self._channel, server=where(self._dsn))
            else:
                log.debug("listener_connected", channel=self._channel)
            self._on_notify()  # a row may have arrived while we were not listening
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if lost.is_set() and not stop.is_set():
                raise ConnectionError("the listening connection was closed by the server")
        finally:
            self._connected = False
            if not connection.is_closed():
                await connection.close(timeout=2)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
