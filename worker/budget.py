"""A budget of bytes that concurrent tasks hold while they work on large data.

The worker holds a message's attachment bytes from loading them until the send ends: each
byte then exists several times over (as loaded, base64, rendered, and aiosmtplib's copies),
so the budget is what bounds the worker's memory with large attachments, not the number
of messages in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["ByteBudget"]


class ByteBudget:
    """At most ``limit`` bytes held at once; a request larger than the limit waits to go alone.

    Holding nothing (``size`` 0) never waits. Waiters are woken whenever bytes are given back
    and take their turn as soon as they fit, so small requests pass a large one that waits.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def held(self) -> int:
        return self._held

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        if size <= 0:
            yield
            return
        while not (self._held == 0 or self._held + size <= self._limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self._held += size
        try:
            yield
        finally:
            # Given back without awaiting anything, so a cancelled holder cannot leak bytes.
            self._held -= size
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
