"""The delivery loop: claim due rows, attempt each in a task of its own, record the outcomes.

One row's path, top to bottom: :meth:`Worker._turn` claims a fair batch of due rows
(:mod:`worker.claims`, ``FOR UPDATE SKIP LOCKED``) and starts a task per message;
:meth:`Worker._process` makes the attempt (:mod:`worker.attempts`, through the profile's
account in :mod:`worker.accounts`) and hands the outcome to the :class:`ResultWriter`, which
batches results and survives a database outage. Between claims the loop sleeps until a
NOTIFY, a free slot, the next scheduled moment or :meth:`Worker.stop`, whichever comes first.
A background task renews the leases of the rows the worker holds and runs housekeeping (lost
leases, expired and unroutable rows). Every step reaches the database through
:mod:`worker.database`, so none of them stops the worker when the database is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import socket
import time
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.accounts import Accounts
from worker.attempts import Attempts, InFlight
from worker.claims import Claims
from worker.crypto import PasswordCipher
from worker.database import Database
from worker.health import HttpEndpoint, WorkerState
from worker.journal import JOURNAL_DIR, ResultJournal
from worker.listener import Listener
from worker.metrics import WorkerMetrics
from worker.oauth_tokens import OAuthTokens
from worker.outcomes import AttemptContext, Claimed, Outcome, interrupted_outcome
from worker.progress import Progress
from worker.repository import Repository
from worker.results import ResultWriter
from worker.settings import Settings

__all__ = ["Worker"]

log = structlog.get_logger("worker")


class Worker:
    """One worker process's delivery loop: :meth:`run` until :meth:`stop`.

    What it does is set by ``settings``: docs/configuration.md, generated from
    :class:`worker.settings.Settings` by ``mailworker config reference``, describes each one.
    ``until_empty``: return once nothing is due and nothing is in flight (batch jobs, tests).
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        listen_dsn: str,
        settings: Settings,
        cipher: PasswordCipher,
        until_empty: bool = False,
    ) -> None:
        self.name = settings.worker_name or _unique_name()
        # Results the database did not take before the exit: kept in the journal (the next
        # start writes them), or lost because the journal could not be written either.
        self.results_journaled = 0
        self.results_lost = 0
        self._settings = settings
        self._until_empty = until_empty
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: dict[int, InFlight] = {}
        self._claim_floor = max(1, settings.concurrency // 4)
        # The earliest known moment something scheduled becomes due (a retry, a pause's end,
        # a cap's room), from housekeeping and this worker's own results. While LISTEN is
        # connected, an idle worker sleeps until then instead of polling.
        self._next_due_at: datetime | None = None
        self._results = ResultWriter(engine)
        self._database = Database(engine, url=listen_dsn, on_back=self._results.retry_now)
        # OAuth profiles' access tokens come through the database, shared with other workers.
        tokens = OAuthTokens(self._database.repository, cipher)
        self._accounts = Accounts(
            cipher,
            idle_check_after=settings.idle_check_after,
            tokens_of=tokens.of,
            pipelining=settings.smtp_pipelining,
        )
        self._attempts = Attempts(
            settings=settings, database=self._database, accounts=self._accounts
        )
        self._progress = Progress(
            self._database,
            interval=settings.progress_interval,
            in_flight=lambda: len(self._in_flight),
        )
        self._claims = Claims(
            self._database, worker=self.name, settings=settings, held=self._held_ids
        )
        self._journal = ResultJournal(settings.data_dir / JOURNAL_DIR)
        self._rows_arrived = False  # a NOTIFY came since the last claim
        self._listener = Listener(listen_dsn, f"{settings.db_schema}_outbox", self._notified)
        self._metrics = WorkerMetrics(in_flight=lambda: len(self._in_flight))
        self._endpoint: HttpEndpoint | None = None
        if settings.http_address is not None:
            self._endpoint = HttpEndpoint(
                address=settings.http_address,
                engine=engine,
                metrics=self._metrics,
                state=self._state,
                worker=self.name,
                stale_after=settings.health_stale_limit,
            )

    @property
    def http_port(self) -> int | None:
        """The port of the ``/healthz`` and ``/metrics`` endpoint, once it listens."""
        return None if self._endpoint is None else self._endpoint.port

    @property
    def listening(self) -> bool:
        """LISTEN is connected: a new row wakes this worker at once."""
        return self._listener.connected

    def stop(self) -> None:
        """Stop claiming; in-flight sends get the grace period. Safe from a signal handler."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop` (or, ``until_empty``, until nothing is left); then give
        in-flight sends the grace period and write every result, or journal it."""
        if self._endpoint is not None:
            await self._endpoint.start()
        log.info("worker_started", worker=self.name, concurrency=self._settings.concurrency)
        helpers = [
            asyncio.create_task(self._results.run(), name="result-writer"),
            asyncio.create_task(self._listener.run(self._stop), name="listener"),
            asyncio.create_task(self._maintain(), name="maintenance"),
            asyncio.create_task(self._progress.report(self._stop), name="progress"),
        ]
        try:
            await self._database.wait_for_schema(self._settings.db_schema, self._stop)
            await self._results.replay(self._journal, give_up=self._stop)
            await self._housekeeping()
            await self._fetch_loop()
        finally:
            await asyncio.shield(self._shutdown(helpers))
        log.info(
            "worker_stopped",
            worker=self.name,
            seconds=round(time.monotonic() - self._metrics.started),
            **dataclasses.asdict(self._progress.tally),
        )

    # --- the loop ------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if await self._turn():
                    return
                failures = 0
            except Exception:  # the last guard: nothing, foreseen or not, ends the loop
                failures += 1
                log.exception("loop_turn_failed", failures=failures)
                await self._sleep_unless_stopped(min(60.0, 0.5 * 2**failures))

    async def _turn(self) -> bool:
        """Claim what is due and start it, then wait for work; True: until-empty is done."""
        self._metrics.loop_turned()
        self._wake.clear()
        if self._next_due_at is not None and self._next_due_at <= _now():
            self._next_due_at = None  # this claim takes what became due
        rows_arrived, self._rows_arrived = self._rows_arrived, False
        claimed = await self._claim()
        for message in claimed:
            self._start(message)
        if rows_arrived and not claimed and not self._in_flight:
            await self._learn_next_due()  # idle, new rows, none due yet: not_before
        if claimed and self._free_slots() > 0:
            return False  # more may be due right now
        nothing_claimed = not claimed and not self._in_flight
        if self._until_empty and nothing_claimed and await self._nothing_left():
            return True
        await self._wait_for_work()
        return False

    async def _claim(self) -> list[Claimed]:
        free = self._free_slots()
        if free <= 0 or (self._in_flight and free < self._claim_floor):
            # While busy, wait until a quarter of the slots are free: one claim then serves
            # many messages, instead of one claim transaction per finished send.
            return []
        claim = await self._claims.claim(free)
        self._note_due(claim.room_at)
        self._metrics.claimed(claim.messages)
        if claim.messages:
            ids = [m.id for m in claim.messages]
            log.debug("messages_claimed", count=len(claim.messages), ids=ids)
        return claim.messages

    def _start(self, message: Claimed) -> None:
        """A task of its own for ``message``; in flight until it ends."""
        task = asyncio.create_task(self._process(message), name=f"send-{message.id}")
        self._in_flight[message.id] = InFlight(task)
        task.add_done_callback(lambda _task: self._finished(message.id))

    async def _process(self, message: Claimed) -> None:
        """One message from claim to result: its attempt, then the outcome to the writer."""
        structlog.contextvars.bind_contextvars(
            outbox_id=message.id, profile=message.profile.name, attempt=message.attempts
        )
        context = AttemptContext(claimed=message, worker=self.name, started_at=_now())
        in_flight = self._in_flight[message.id]
        try:
            outcome = await self._attempts.make(context, in_flight)
        except asyncio.CancelledError:
            self._record(
                interrupted_outcome(context, finished_at=_now(), during_send=in_flight.started)
            )
            raise
        self._record(outcome)

    def _record(self, outcome: Outcome) -> None:
        """Hand ``outcome`` to the result writer; count it; note when its row is due again."""
        self._results.put(outcome)
        self._progress.tally.add(outcome)
        self._metrics.observe(outcome)
        if outcome.status == "pending":
            self._note_due(outcome.next_attempt_at)

    def _finished(self, message_id: int) -> None:
        """A message's task ended: a slot is free, so the loop may claim again."""
        self._in_flight.pop(message_id, None)
        self._wake.set()

    async def _wait_for_work(self) -> None:
        """Until a NOTIFY, a free slot, a stop, or the time to look again.

        Without LISTEN, that time is the poll interval. With it, new rows wake the worker, so
        it sleeps until the next scheduled moment it knows of, and at most one housekeeping
        interval: what other workers or operators scheduled, it learns there.
        """
        timeout = self._settings.poll_interval
        if self._listener.connected:
            timeout = max(timeout, self._settings.housekeeping_interval)
            if self._next_due_at is not None:
                until_due = (self._next_due_at - _now()).total_seconds()
                timeout = min(timeout, max(0.0, until_due))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    def _notified(self) -> None:
        self._rows_arrived = True
        self._wake.set()

    # --- the loop's helpers --------------------------------------------------------------

    def _free_slots(self) -> int:
        return self._settings.concurrency - len(self._in_flight)

    def _held_ids(self) -> list[int]:
        """Rows this worker holds: being sent, or sent with the result not written yet."""
        return sorted(self._in_flight.keys() | self._results.held_ids())

    def _note_due(self, moment: datetime | None) -> None:
        if moment is not None and (self._next_due_at is None or moment < self._next_due_at):
            self._next_due_at = moment

    async def _learn_next_due(self) -> None:
        self._note_due(
            await self._database.run("next_due_check", Repository.next_scheduled, default=None)
        )

    async def _nothing_left(self) -> bool:
        """In until-empty mode: nothing is due now or within one poll interval."""
        await self._results.flushed()
        await self._housekeeping()
        poll = self._settings.poll_interval
        return not await self._database.run(
            "due_work_check", lambda repository: repository.work_due_within(poll), default=True
        )

    def _state(self) -> WorkerState:
        return WorkerState(saturated=self._free_slots() <= 0, stopping=self._stop.is_set())

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    # --- background ----------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Renew the leases of rows this worker holds often; run housekeeping now and then.

        Rows are held while they are sent and until their results are written. Housekeeping
        reclaims expired leases, so it runs only right after a successful renewal: after a
        database outage longer than the lease, this worker must not take back (and send
        again) rows it is still sending or has sent with the result still waiting.
        """
        renew_every = self._settings.lease_seconds / 3
        tick = min(renew_every, self._settings.housekeeping_interval)
        since_housekeeping = 0.0
        while not self._stop.is_set():
            await asyncio.sleep(tick)
            since_housekeeping += tick
            renewed = True
            if self._in_flight or self._results.backlog:
                renewed = await self._renew_leases()
            if renewed and since_housekeeping >= self._settings.housekeeping_interval:
                since_housekeeping = 0.0
                await self._housekeeping()

    async def _renew_leases(self) -> bool:
        """Extend the leases of the rows this worker holds; False if that failed."""
        renewed = await self._database.run(
            "lease_renewal",
            lambda repository: repository.renew_leases(
                worker=self.name, lease_seconds=self._settings.lease_seconds, held=self._held_ids()
            ),
            default=None,
            transaction=True,
        )
        return renewed is not None

    async def _housekeeping(self) -> None:
        async def tidy(repository: Repository) -> tuple[dict[str, int], bool, datetime | None]:
            counts = await repository.housekeeping(
                max_attempts=self._settings.max_attempts,
                lease_seconds=self._settings.lease_seconds,
            )
            return counts, await repository.any_capped_profile(), await repository.next_scheduled()

        found = await self._database.run("housekeeping", tidy, default=None, transaction=True)
        if found is not None:
            self._after_housekeeping(*found)

    def _after_housekeeping(
        self, counts: dict[str, int], capped_profiles: bool, next_scheduled: datetime | None
    ) -> None:
        if counts["reclaimed"] or (capped_profiles and not self._claims.capped_profiles):
            self._wake.set()  # rows due now that no NOTIFY announced
        self._claims.capped_profiles = capped_profiles
        self._note_due(next_scheduled)
        changed = {name: count for name, count in counts.items() if count}
        if changed:
            log.info("housekeeping", **changed)

    # --- shutdown ------------------------------------------------------------------------

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        self._stop.set()
        if self._in_flight:
            log.info("worker_stopping", in_flight=len(self._in_flight))
        for in_flight in list(self._in_flight.values()):
            if not in_flight.started:
                in_flight.task.cancel()
        tasks = [in_flight.task for in_flight in self._in_flight.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self._settings.shutdown_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._results.close()
        writer, *others = helpers
        try:
            await asyncio.wait_for(writer, timeout=max(5.0, self._settings.shutdown_grace))
        except TimeoutError:
            self.results_journaled, self.results_lost = self._results.journal_unwritten(
                self._journal, worker=self.name
            )
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._accounts.close()
        if self._endpoint is not None:
            await self._endpoint.close()


def _unique_name() -> str:
    # A random part per start: a container restarted with the same host name and PID 1
    # must not take its previous run's rows for its own.
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _now() -> datetime:
    return datetime.now(UTC)
