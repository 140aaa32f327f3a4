"""The delivery worker: claims due messages, sends them over SMTP, records what happened.

The loop, top to bottom: claim a fair batch of due rows (``FOR UPDATE SKIP LOCKED``), start
one task per message, then sleep until a NOTIFY, the poll interval, a free slot or
:meth:`Worker.stop` — whichever comes first. Results go to a :class:`ResultWriter` that
batches them and survives a database outage. A background task renews the leases of
in-flight rows and runs housekeeping (lost leases, expired and unroutable rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import socket
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.budget import ByteBudget
from worker.caps import Room, fit_recipients
from worker.classify import Failure, FailureKind, ProfileUnusable, Stage, classify
from worker.crypto import PasswordCipher
from worker.db import DATABASE_ERRORS
from worker.delivery import (
    AttemptContext,
    Claimed,
    Outcome,
    failed_outcome,
    released_outcome,
    sent_outcome,
)
from worker.errors import SecretKeyError
from worker.health import HttpEndpoint, WorkerState
from worker.hints import provider_hint
from worker.listener import Listener
from worker.metrics import WorkerMetrics
from worker.mime import MessageBuildError, MessageContent, OutgoingAttachment, Sender, render
from worker.presets import load_presets
from worker.profiles import Profile
from worker.repository import Repository
from worker.results import ResultWriter
from worker.retry import Fail, PauseProfile, RetryPolicy, decide
from worker.settings import Settings
from worker.smtp import ConnectFailed, ConnectionPool

__all__ = ["Worker"]

log = structlog.get_logger("worker")


class ProfilePaused(Exception):
    """The profile was paused while this message waited for a connection."""

    def __init__(self, pause: PauseProfile) -> None:
        super().__init__(pause.reason)
        self.pause = pause


@dataclasses.dataclass(eq=False)
class _InFlight:
    task: asyncio.Task[None]
    started: bool = False  # the SMTP transaction began: the message can no longer be put back


class Worker:
    """One worker process's delivery loop.

    Settings used (see :class:`worker.settings.Settings`): ``concurrency``, ``claim_depth``,
    ``attachment_budget``, ``poll_interval``, ``housekeeping_interval``, ``lease_seconds``,
    ``shutdown_grace``, the retry and pause settings, ``idle_check_after``, ``worker_name``,
    ``http_address`` and ``health_stale_after`` (the ``/healthz`` and ``/metrics`` endpoint,
    if an address is set).
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
        self.name = settings.worker_name or f"{socket.gethostname()}:{os.getpid()}"
        self._engine = engine
        # Single statements that are their own transaction: no BEGIN and COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._settings = settings
        self._cipher = cipher
        self._until_empty = until_empty
        self._policy = RetryPolicy.from_settings(settings)
        self._rng = random.Random()  # noqa: S311 - retry jitter, not security
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: dict[int, _InFlight] = {}
        self._claim_floor = max(1, settings.concurrency // 4)
        self._pools: dict[str, ConnectionPool] = {}
        self._attachment_budget = ByteBudget(settings.attachment_budget)
        self._closing_pools: set[asyncio.Task[None]] = set()
        self._paused: dict[str, PauseProfile] = {}
        self._cap_reached: dict[str, datetime] = {}  # so each cap hit is logged once
        # Whether an enabled profile has a cap, as of the last housekeeping. Until a worker
        # knows of one, its claims leave capped profiles out, so a new cap is never passed.
        self._capped_profiles = False
        # The earliest known moment something scheduled becomes due (a retry, a pause's end,
        # a cap's room), from housekeeping and this worker's own results. While LISTEN is
        # connected, an idle worker sleeps until then instead of polling.
        self._next_due_at: datetime | None = None
        self._resumed: set[str] = set()  # profiles whose probe succeeded since their last pause
        self._results = ResultWriter(engine)
        self._presets = load_presets()
        self._rows_arrived = False  # a NOTIFY came since the last claim
        self._listener = Listener(listen_dsn, f"{settings.db_schema}_outbox", self._notified)
        self._database_down = False
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
        if self._endpoint is not None:
            await self._endpoint.start()
        log.info("worker_started", worker=self.name, concurrency=self._settings.concurrency)
        helpers = [
            asyncio.create_task(self._results.run(), name="result-writer"),
            asyncio.create_task(self._listener.run(self._stop), name="listener"),
            asyncio.create_task(self._maintain(), name="maintenance"),
        ]
        try:
            await self._housekeeping()
            await self._fetch_loop()
        finally:
            await asyncio.shield(self._shutdown(helpers))
        log.info("worker_stopped", worker=self.name)

    # --- the loop ------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while not self._stop.is_set():
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
                continue  # more may be due right now
            nothing_claimed = not claimed and not self._in_flight
            if self._until_empty and nothing_claimed and await self._nothing_left():
                return
            await self._wait_for_work()

    async def _nothing_left(self) -> bool:
        """In until-empty mode: nothing is due now or within one poll interval."""
        await self._results.flushed()
        await self._housekeeping()
        try:
            async with self._engine.connect() as connection:
                repository = Repository(connection)
                return not await repository.work_due_within(self._settings.poll_interval)
        except DATABASE_ERRORS as exc:
            self._database_unavailable(exc)
            return False

    async def _claim(self) -> list[Claimed]:
        free = self._free_slots()
        if free <= 0 or (self._in_flight and free < self._claim_floor):
            # While busy, wait until a quarter of the slots are free: one claim then serves
            # many messages, instead of one claim transaction per finished send.
            return []
        try:
            if self._capped_profiles:
                async with self._engine.begin() as connection:
                    claimed = await self._claim_within_caps(Repository(connection), free)
            else:
                # No cap to lock and count first: one statement claims for every profile.
                async with self._autocommit.connect() as connection:
                    claimed = await Repository(connection).claim_due(
                        worker=self.name,
                        lease_seconds=self._settings.lease_seconds,
                        free_slots=free,
                        per_connection=self._settings.claim_depth,
                        include_capped=False,
                    )
        except DATABASE_ERRORS as exc:
            self._database_unavailable(exc)
            return []
        self._database_available()
        self._metrics.claimed(claimed)
        if claimed:
            log.info("messages_claimed", count=len(claimed), ids=[m.id for m in claimed])
        return claimed

    async def _claim_within_caps(self, repository: Repository, free: int) -> list[Claimed]:
        """Claim due rows; capped profiles get only what their caps still allow.

        Runs in one transaction that holds the capped profiles' locks until it commits, so
        workers claiming at the same moment count each other's claims.
        """
        rooms = await repository.cap_rooms()
        claimed = await repository.claim_due(
            worker=self.name,
            lease_seconds=self._settings.lease_seconds,
            free_slots=free,
            per_connection=self._settings.claim_depth,
            cap_room={name: room.messages for name, room in rooms.items()},
        )
        claimed, excess = fit_recipients(claimed, rooms)
        if excess:
            reason = "waiting: the daily recipient cap has no room for this message yet"
            await repository.release_claimed([m.id for m in excess], reason=reason)
            for name in {message.profile.name for message in excess}:
                rooms[name] = rooms[name].without_recipient_room()
        for name, room in rooms.items():
            if room.full_cap is not None:
                await self._defer_until_room(repository, name, room)
        return claimed

    async def _defer_until_room(self, repository: Repository, name: str, room: Room) -> None:
        """A full profile's due messages wait, saying which cap and until when."""
        frees_at = await repository.cap_frees_at(name, room)
        if frees_at is None:  # only sends in flight fill the cap: look again soon
            frees_at = _now() + timedelta(seconds=self._settings.poll_interval)
        reason = f"waiting: {room.full_cap} reached; room again at {_iso_z(frees_at)}"
        deferred = await repository.defer_for_cap(name, until=frees_at, reason=reason)
        self._note_due(frees_at)
        if deferred and self._cap_reached.get(name) != frees_at:
            self._cap_reached[name] = frees_at
            log.info(
                "profile_cap_reached", profile=name, cap=room.full_cap, frees_at=_iso_z(frees_at)
            )

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

    async def _learn_next_due(self) -> None:
        try:
            async with self._autocommit.connect() as connection:
                self._note_due(await Repository(connection).next_scheduled())
        except DATABASE_ERRORS as exc:
            self._database_unavailable(exc)

    def _note_due(self, moment: datetime | None) -> None:
        if moment is not None and (self._next_due_at is None or moment < self._next_due_at):
            self._next_due_at = moment

    def _free_slots(self) -> int:
        return self._settings.concurrency - len(self._in_flight)

    def _state(self) -> WorkerState:
        return WorkerState(saturated=self._free_slots() <= 0, stopping=self._stop.is_set())

    def _start(self, message: Claimed) -> None:
        task = asyncio.create_task(self._process(message), name=f"send-{message.id}")
        self._in_flight[message.id] = _InFlight(task)
        task.add_done_callback(lambda _task: self._finished(message.id))

    def _finished(self, message_id: int) -> None:
        self._in_flight.pop(message_id, None)
        self._wake.set()

    # --- one message ---------------------------------------------------------------------

    async def _process(self, message: Claimed) -> None:
        structlog.contextvars.bind_contextvars(
            message_id=message.id, profile=message.profile.name, attempt=message.attempts
        )
        context = AttemptContext(claimed=message, worker=self.name, started_at=_now())
        try:
            outcome = await self._attempt(context)
        except asyncio.CancelledError:
            self._record(self._interrupted(context))
            raise
        except Exception as exc:  # a bug must not lose the message or stop the worker
            log.exception("attempt_crashed")
            failure = classify(exc, Stage.SEND)
            outcome = await self._after_failure(context, failure, tls_version=None)
        self._record(outcome)
        _log_outcome(outcome)
        if outcome.resume_profile and outcome.profile not in self._resumed:
            # Probes claimed before the resume is written also succeed: say it once.
            self._resumed.add(outcome.profile)
            log.info("profile_resumed", profile=outcome.profile)

    def _record(self, outcome: Outcome) -> None:
        self._results.put(outcome)
        self._metrics.observe(outcome)
        if outcome.status == "pending":
            self._note_due(outcome.next_attempt_at)

    async def _attempt(self, context: AttemptContext) -> Outcome:
        message = context.claimed
        now = _now()
        if message.expires_at is not None and message.expires_at <= now:
            return failed_outcome(
                context,
                finished_at=now,
                failure=Failure(kind=FailureKind.PERMANENT, stage=Stage.BUILD, reason="expired"),
                decision=Fail("expired: not sent before expires_at"),
                tls_version=None,
            )
        paused = self._pause_of(message.profile)
        if paused is not None and paused.until > now:
            return self._deferred(context, paused)
        too_many = _too_many_recipients(message)
        if too_many is not None:
            failure = Failure(kind=FailureKind.PERMANENT, stage=Stage.BUILD, reason=too_many)
            return await self._after_failure(context, failure, tls_version=None)
        return await self._send(context)

    async def _send(self, context: AttemptContext) -> Outcome:
        """Build the message once a connection is free, and send it.

        Built only then: a claim holds many rows that wait for the profile's few
        connections, and a built message with its attachments can be tens of megabytes.
        """
        message = context.claimed
        tls_version: str | None = None
        try:
            pool = self._pool(message.profile)
            async with (
                self._attachment_budget.hold(message.attachment_bytes),
                pool.session() as session,
            ):
                tls_version = session.tls_version
                try:
                    rendered = render(_sender(message.profile), await self._content(message))
                except MessageBuildError as exc:
                    failure = classify(exc, Stage.BUILD)
                    return await self._after_failure(context, failure, tls_version=None)
                self._in_flight[message.id].started = True
                refused, reply = await session.client.sendmail(
                    rendered.sender, rendered.recipients, rendered.data
                )
                recipients = rendered.recipients
        except ProfilePaused as exc:
            return self._deferred(context, exc.pause)
        except ConnectFailed as exc:
            failure = classify(exc.__cause__ or exc, exc.stage)
            return await self._after_failure(context, failure, tls_version=tls_version)
        except ProfileUnusable as exc:
            failure = classify(exc, Stage.CONNECT)
            return await self._after_failure(context, failure, tls_version=None)
        except Exception as exc:  # noqa: BLE001 - every send error is classified, none escapes
            failure = classify(exc, Stage.SEND)
            return await self._after_failure(context, failure, tls_version=tls_version)
        return sent_outcome(
            context,
            finished_at=_now(),
            reply=reply,
            refused={address: (r.code, r.message) for address, r in refused.items()},
            recipients=recipients,
            tls_version=tls_version,
        )

    async def _content(self, message: Claimed) -> MessageContent:
        attachments: list[OutgoingAttachment] = []
        if message.attachment_bytes:
            async with self._engine.connect() as connection:
                rows = await Repository(connection).load_attachments(message.id)
            attachments = [
                OutgoingAttachment(filename=name, content_type=kind, content=content)
                for name, kind, content in rows
            ]
        return MessageContent(
            to=message.to_addrs,
            cc=message.cc_addrs,
            bcc=message.bcc_addrs,
            subject=message.subject,
            body_text=message.body_text,
            body_html=message.body_html,
            headers={str(k): str(v) for k, v in message.headers.items()},
            message_id=message.message_id,
            attachments=attachments,
        )

    async def _after_failure(
        self, context: AttemptContext, failure: Failure, *, tls_version: str | None
    ) -> Outcome:
        message = context.claimed
        now = _now()
        failure = provider_hint(failure, message.profile, self._presets)
        frees_at = (
            await self._daily_window_frees_at(message.profile) if failure.daily_limit else None
        )
        decision = decide(
            failure,
            attempt=message.attempts,
            age=now - message.created_at,
            pause_count=message.profile_pause_count,
            now=now,
            policy=self._policy,
            rng=self._rng,
            daily_window_frees_at=frees_at,
        )
        if isinstance(decision, PauseProfile):
            self._pause(message.profile, decision)
        return failed_outcome(
            context, finished_at=now, failure=failure, decision=decision, tls_version=tls_version
        )

    async def _daily_window_frees_at(self, profile: Profile) -> datetime | None:
        try:
            async with self._engine.connect() as connection:
                return await Repository(connection).daily_window_frees_at(profile.name)
        except DATABASE_ERRORS as exc:
            self._database_unavailable(exc)
            return None

    def _deferred(self, context: AttemptContext, pause: PauseProfile) -> Outcome:
        failure = Failure(
            kind=FailureKind.PROFILE, stage=Stage.CONNECT, reason=pause.reason, hint=pause.hint
        )
        outcome = failed_outcome(
            context, finished_at=_now(), failure=failure, decision=pause, tls_version=None
        )
        return dataclasses.replace(outcome, pause=None)  # the pause is written once

    def _interrupted(self, context: AttemptContext) -> Outcome:
        in_flight = self._in_flight.get(context.claimed.id)
        if in_flight is not None and in_flight.started:
            why = "the worker stopped during the send; it will be retried"
            return dataclasses.replace(
                released_outcome(context, finished_at=_now(), why=why), uncount_attempt=False
            )
        why = "returned to the queue at worker shutdown"
        return released_outcome(context, finished_at=_now(), why=why)

    def _pause(self, profile: Profile, pause: PauseProfile) -> None:
        self._resumed.discard(profile.name)
        already = self._paused.get(profile.name)
        self._paused[profile.name] = pause
        if already is None or already.until <= _now():
            log.warning(
                "profile_paused",
                profile=profile.name,
                until=pause.until.isoformat(),
                reason=pause.reason,
                hint=pause.hint,
            )

    def _pause_of(self, profile: Profile) -> PauseProfile | None:
        """This worker's pause of ``profile``; none once its connection settings were edited.

        An edit (a new password, say) ends the pause in the database at once; the worker's own
        memory of it must end too, or it would defer the messages until the old pause's end.
        """
        pause = self._paused.get(profile.name)
        pool = self._pools.get(profile.name)
        if pause is not None and pool is not None and not pool.serves(profile):
            del self._paused[profile.name]
            return None
        return pause

    def _refuse_if_paused(self, profile_name: str) -> None:
        pause = self._paused.get(profile_name)
        if pause is not None and pause.until > _now():
            raise ProfilePaused(pause)

    def _pool(self, profile: Profile) -> ConnectionPool:
        """The connection pool of ``profile``; a changed profile gets a fresh pool."""
        pool = self._pools.get(profile.name)
        if pool is not None and pool.serves(profile):
            return pool
        if pool is not None:
            closing = asyncio.create_task(pool.close(), name=f"close-pool-{profile.name}")
            self._closing_pools.add(closing)
            closing.add_done_callback(self._closing_pools.discard)
        password = None
        if profile.auth_method != "none" and profile.password_encrypted is not None:
            try:
                password = self._cipher.decrypt(profile.password_encrypted, profile=profile.name)
            except SecretKeyError as exc:
                raise ProfileUnusable(str(exc)) from None
        pool = ConnectionPool(
            profile,
            password,
            idle_check_after=self._settings.idle_check_after,
            before_connect=lambda: self._refuse_if_paused(profile.name),
        )
        self._pools[profile.name] = pool
        return pool

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
        """Extend the leases of this worker's rows; False if the database could not be reached."""
        try:
            async with self._engine.begin() as connection:
                await Repository(connection).renew_leases(
                    worker=self.name, lease_seconds=self._settings.lease_seconds
                )
        except DATABASE_ERRORS as exc:
            self._database_unavailable(exc)
            return False
        self._database_available()
        return True

    async def _housekeeping(self) -> None:
        try:
            async with self._engine.begin() as connection:
                repository = Repository(connection)
                counts = await repository.housekeeping(
                    max_attempts=self._settings.max_attempts,
                    lease_seconds=self._settings.lease_seconds,
                )
                capped_profiles = await repository.any_capped_profile()
                next_scheduled = await repository.next_scheduled()
        except DATABASE_ERRORS as exc:
            self._database_unavailable(exc)
            return
        if counts["reclaimed"] or (capped_profiles and not self._capped_profiles):
            self._wake.set()  # rows due now that no NOTIFY announced
        self._capped_profiles = capped_profiles
        self._note_due(next_scheduled)
        changed = {name: count for name, count in counts.items() if count}
        if changed:
            log.info("housekeeping", **changed)
        now = _now()
        for name in [name for name, pause in self._paused.items() if pause.until <= now]:
            del self._paused[name]

    def _database_unavailable(self, exc: BaseException) -> None:
        if not self._database_down:
            log.warning("database_unavailable", error=str(exc).splitlines()[0] if str(exc) else "")
        self._database_down = True

    def _database_available(self) -> None:
        if self._database_down:
            log.info("database_available")
            self._results.retry_now()  # results kept during the outage are written first
        self._database_down = False

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
            log.error("results_not_written", count=self._results.backlog)
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self._pools.values()), *self._closing_pools)
        if self._endpoint is not None:
            await self._endpoint.close()


def _too_many_recipients(message: Claimed) -> str | None:
    profile = message.profile
    count = len({a.lower() for a in (*message.to_addrs, *message.cc_addrs, *message.bcc_addrs)})
    if (
        profile.max_recipients_per_message is not None
        and count > profile.max_recipients_per_message
    ):
        return (
            f"the message has {count} recipients; profile {profile.name} allows at most "
            f"{profile.max_recipients_per_message} per message"
        )
    if profile.daily_recipient_cap is not None and count > profile.daily_recipient_cap:
        return (
            f"the message has {count} recipients, more than the daily cap of "
            f"{profile.daily_recipient_cap} recipients of profile {profile.name}"
        )
    return None


def _sender(profile: Profile) -> Sender:
    return Sender(
        address=profile.from_address,
        display_name=profile.display_name,
        reply_to=profile.reply_to,
    )


def _log_outcome(outcome: Outcome) -> None:
    fields = {
        "outcome": outcome.attempt_outcome,
        "smtp_code": outcome.smtp_code,
        "tls_version": outcome.tls_version,
        "duration_ms": round((outcome.finished_at - outcome.started_at).total_seconds() * 1000),
    }
    if outcome.status == "sent":
        refused = [a for a, r in outcome.recipients.items() if r.get("code") != 250]
        log.info("mail_sent", **fields, refused=refused or None)
    elif outcome.status == "failed":
        log.warning("mail_failed", **fields, reason=outcome.status_reason)
    elif outcome.attempt_outcome == "retry":
        at = _iso(outcome.next_attempt_at)
        log.info("retry_scheduled", **fields, at=at, reason=outcome.last_error)
    else:
        until = _iso(outcome.next_attempt_at)
        log.info("mail_deferred", **fields, until=until, reason=outcome.status_reason)


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _now() -> datetime:
    return datetime.now(UTC)
