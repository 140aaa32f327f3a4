"""What a worker's attempts came to: its tally, and a progress line while messages move."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

import structlog

from worker.database import Database
from worker.outcomes import Outcome
from worker.repository import Repository

__all__ = ["Progress", "Tally"]

# The loop's logger: the progress line sums up the loop's own mail_* lines.
log = structlog.get_logger("worker")


@dataclasses.dataclass
class Tally:
    """What this worker's attempts came to since it started."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0

    def add(self, outcome: Outcome) -> None:
        """Count one attempt's outcome."""
        if outcome.status == "sent":
            self.sent += 1
        elif outcome.status == "failed":
            self.failed += 1
        elif outcome.attempt_outcome == "retry":
            self.retried += 1
        elif outcome.attempt_outcome == "deferred":
            self.deferred += 1

    def since(self, earlier: Tally) -> dict[str, int]:
        """What was counted after ``earlier`` (a copy of this tally), by name."""
        return {
            name: value - getattr(earlier, name) for name, value in dataclasses.asdict(self).items()
        }


class Progress:
    """The worker's tally, and its ``progress`` line every ``interval`` seconds while
    messages move; ``in_flight`` says how many are being sent."""

    def __init__(
        self, database: Database, *, interval: float, in_flight: Callable[[], int]
    ) -> None:
        self.tally = Tally()
        self._database = database
        self._interval = interval
        self._in_flight = in_flight

    async def report(self, stop: asyncio.Event) -> None:
        """Until ``stop``: what the attempts came to since the last line, the rate, and what
        is left (the log of a busy worker, summed up); no line while nothing moves."""
        last, last_at = dataclasses.replace(self.tally), time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            done = self.tally.since(last)
            if not any(done.values()):
                continue
            pending = await self._database.run("progress", Repository.count_pending, default=None)
            seconds = time.monotonic() - last_at
            log.info(
                "progress",
                **done,
                sent_per_second=round(done["sent"] / seconds, 1),
                in_flight=self._in_flight(),
                pending=pending,
            )
            last, last_at = dataclasses.replace(self.tally), time.monotonic()
