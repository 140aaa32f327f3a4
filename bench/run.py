"""``python -m bench.run``: how fast the worker drains the outbox, beside the machine's limit.

One run measures, each figure the median of ``--runs`` with min and max:

- ``worker_1`` / ``worker_2``: messages a second from "N rows committed" to "N accepted by the
  sink", with 1 and 2 idle ``python -m worker run`` processes;
- ``limit``: a bare aiosmtplib loop sending N pre-rendered messages over as many reused
  connections as the profile allows, with no database;
- ``latency``: an idle worker, one row inserted with plain SQL, time to the sink's acceptance
  (p50, p99 over ``--latency-samples``);
- ``enqueue_sql`` / ``enqueue_api``: rows a second through plain SQL and through
  ``worker.outbox.enqueue_and_commit``, one transaction each.

The sink runs in a process of its own (:mod:`bench.sink`). Every measurement also checks that
every message arrived; a failed check makes the exit code 1. ``--smoke`` is a tiny run for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.sink import SmtpSink
from worker.db import async_url
from worker.embedded_db import start_embedded_postgres
from worker.migrate import upgrade
from worker.mime import MessageContent, RenderedMessage, Sender, render
from worker.models import outbox
from worker.outbox import enqueue_and_commit
from worker.repository import Repository

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILE = "bench"
SENDER = Sender(address="powiadomienia@example.com", display_name="Bench", reply_to=None)
# About 1 KB of Polish text once rendered (quoted-printable makes it a little longer).
BODY = (
    "Dzień dobry,\n\n"
    + "uprzejmie informujemy, że Twoje zamówienie zostało przyjęte do realizacji. "
    "Przesyłka zostanie nadana w ciągu dwóch dni roboczych, a numer listu przewozowego "
    "otrzymasz w osobnej wiadomości. " * 3 + "\n\nPozdrawiamy,\nZespół obsługi klienta\n"
)
# The worker's settings for the benchmark: a short poll, otherwise the defaults.
WORKER_ENV = {
    "MAILWORKER_POLL_INTERVAL": "0.1",
    "MAILWORKER_LOG_FORMAT": "json",
    "MAILWORKER_LOG_LEVEL": "info",
    "MAILWORKER_SHUTDOWN_GRACE": "5",
}
PACKAGES = ["mail-outbox-worker", "aiosmtplib", "aiosmtpd", "asyncpg", "sqlalchemy"]


# --- options and results ---------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    messages: int
    runs: int
    latency_samples: int
    connections: int
    database: str
    json_path: Path
    smoke: bool


@dataclass
class Results:
    """Every figure, and every failed check (a message missing or sent twice)."""

    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)
            print(f"CHECK FAILED: {failure}", file=sys.stderr)

    def rate(self, name: str, rates: list[float], counts: list[int], messages: int) -> None:
        self.figures[name] = {
            "unit": "msgs/s",
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "runs": rates,
            "messages": messages,
            "counted": counts,
        }


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--messages", type=int, default=2000, help="messages per measurement")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median, min-max)")
    parser.add_argument("--latency-samples", type=int, default=50, help="messages for latency")
    parser.add_argument("--connections", type=int, default=4, help="profile max_connections")
    parser.add_argument("--database", default="mailworker_bench", help="dropped and re-created")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), dest="json_path")
    parser.add_argument(
        "--smoke", action="store_true", help="correctness only: 50 messages, 1 run, 5 samples"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.messages, args.runs, args.latency_samples = 50, 1, 5
    return Options(
        messages=args.messages,
        runs=args.runs,
        latency_samples=args.latency_samples,
        connections=args.connections,
        database=args.database,
        json_path=args.json_path,
        smoke=args.smoke,
    )


# --- the database ----------------------------------------------------------------------------


def server_url() -> str:
    """``DATABASE_URL`` (any database on the server), else the embedded PostgreSQL."""
    if os.environ.get("DATABASE_URL"):
        return async_url(os.environ["DATABASE_URL"])
    return start_embedded_postgres(REPO_ROOT / ".data")


def fresh_database(url: str, name: str) -> str:
    """Drop and create ``name`` beside the database of ``url``, migrate it, return its URL."""

    async def admin() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                await connection.execute(text(f"CREATE DATABASE {name}"))
        finally:
            await engine.dispose()

    asyncio.run(admin())
    bench_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    upgrade(bench_url, "mail")
    return bench_url


async def add_profile(engine: AsyncEngine, sink: SmtpSink, connections: int) -> None:
    async with engine.begin() as connection:
        await Repository(connection).create_profile(
            {
                "name": PROFILE,
                "from_address": SENDER.address,
                "display_name": SENDER.display_name,
                "host": sink.host,
                "port": sink.port,
                "encryption": "none",
                "auth_method": "none",
                "max_connections": connections,
                "timeout_seconds": 30,
                "is_default": True,
            }
        )


def row(number: int) -> dict[str, Any]:
    return {
        "profile": PROFILE,
        "to_addrs": [f"r{number}@example.com"],
        "subject": f"Powiadomienie nr {number}",
        "body_text": BODY,
    }


async def empty_outbox(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE mail.outbox CASCADE"))


async def outbox_statuses(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT status, count(*) FROM mail.outbox GROUP BY status")
        )
        return {status: int(count) for status, count in result}


# --- worker processes ------------------------------------------------------------------------


class Workers:
    """``count`` idle ``python -m worker run`` processes; their logs go to ``directory``."""

    def __init__(self, url: str, secret_key: str, directory: Path, count: int) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        for index in range(count):
            env = {
                **os.environ,
                **WORKER_ENV,
                "DATABASE_URL": url,
                "MAILWORKER_SECRET_KEY": secret_key,
                "MAILWORKER_DATA_DIR": str(directory / "data"),
                "MAILWORKER_WORKER_NAME": f"bench-{index}",
            }
            with (directory / f"worker-{index}.log").open("ab") as log:
                self._processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "worker", "run"],
                        cwd=REPO_ROOT,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def assert_running(self) -> None:
        for process in self._processes:
            if process.poll() is not None:
                raise RuntimeError(f"worker {process.pid} exited with {process.returncode}")

    async def wait_listening(self, engine: AsyncEngine) -> None:
        """Until every worker has LISTENed: from then on a new row wakes one at once."""

        async def listening() -> bool:
            self.assert_running()
            async with engine.connect() as connection:
                count = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                    )
                )
            return int(count or 0) >= len(self._processes)

        await wait_for(listening, within=60, what="workers listening")

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def workers(url: str, secret_key: str, directory: Path, count: int) -> Iterator[Workers]:
    started = Workers(url, secret_key, directory, count)
    try:
        yield started
    finally:
        started.stop()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str, interval: float = 0.001
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within:g} s")
        await asyncio.sleep(interval)


async def wait_count(sink: SmtpSink, count: int, within: float, check: Callable[[], None]) -> None:
    async def arrived() -> bool:
        check()
        return sink.count >= count

    await wait_for(arrived, within=within, what=f"{count} messages at the sink")


# --- the measurements ------------------------------------------------------------------------


@dataclass
class Bench:
    options: Options
    engine: AsyncEngine
    url: str
    sink: SmtpSink
    secret_key: str
    directory: Path
    results: Results = field(default_factory=Results)

    @property
    def deadline(self) -> float:
        return max(60.0, self.options.messages / 20)

    async def settle_and_check(self, name: str, expected: int) -> int:
        """After a short quiet time: the sink got exactly ``expected`` (none missing or twice)."""
        await asyncio.sleep(0.3)
        counted = self.sink.count
        self.results.check(
            counted == expected and self.sink.recipients == expected,
            f"{name}: the sink accepted {counted} messages with {self.sink.recipients}"
            f" recipients, expected {expected}",
        )
        return counted

    async def worker_throughput(self, processes: int) -> None:
        name, n = f"worker_{processes}", self.options.messages
        rates, counts = [], []
        for _ in range(self.options.runs):
            await empty_outbox(self.engine)
            self.sink.reset()
            with workers(self.url, self.secret_key, self.directory, processes) as started:
                await started.wait_listening(self.engine)
                async with self.engine.begin() as connection:
                    await connection.execute(outbox.insert(), [row(i) for i in range(n)])
                committed = time.monotonic()
                await wait_count(self.sink, n, self.deadline, started.assert_running)
                rates.append(n / (self.sink.last_at - committed))
                counts.append(await self.settle_and_check(name, n))
            statuses = await outbox_statuses(self.engine)
            self.results.check(statuses == {"sent": n}, f"{name}: outbox statuses {statuses}")
        self.results.rate(name, rates, counts, n)

    async def limit(self) -> None:
        n, connections = self.options.messages, self.options.connections
        rendered = [render(SENDER, content(i)) for i in range(n)]
        rates, counts = [], []
        for _ in range(self.options.runs):
            self.sink.reset()
            queue = iter(rendered)
            started = time.monotonic()
            await asyncio.gather(*(self._send_all(queue) for _ in range(connections)))
            rates.append(n / (self.sink.last_at - started))
            counts.append(await self.settle_and_check("limit", n))
        self.results.rate("limit", rates, counts, n)

    async def _send_all(self, queue: Iterator[RenderedMessage]) -> None:
        """One reused connection sending from the shared ``queue`` until it is empty."""
        smtp = aiosmtplib.SMTP(hostname=self.sink.host, port=self.sink.port, start_tls=False)
        await smtp.connect()
        try:
            for message in queue:
                await smtp.sendmail(message.sender, message.recipients, message.data)
        finally:
            await smtp.quit()

    async def latency(self) -> None:
        samples: list[float] = []
        await empty_outbox(self.engine)
        self.sink.reset()
        insert = text(
            "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
            " VALUES (:profile, :to_addrs, :subject, :body_text)"
        )
        with workers(self.url, self.secret_key, self.directory, 1) as started:
            await started.wait_listening(self.engine)
            for number in range(self.options.latency_samples):
                await asyncio.sleep(0.2)  # the worker is idle again
                async with self.engine.begin() as connection:
                    await connection.execute(insert, row(number))
                committed = time.monotonic()
                await wait_count(self.sink, number + 1, 30, started.assert_running)
                samples.append((self.sink.last_at - committed) * 1000)
            counted = await self.settle_and_check("latency", self.options.latency_samples)
        ordered = sorted(samples)
        self.results.figures["latency"] = {
            "unit": "ms",
            "p50": statistics.median(ordered),
            "p99": ordered[max(0, round(0.99 * len(ordered)) - 1)],  # nearest rank
            "min": ordered[0],
            "max": ordered[-1],
            "samples": samples,
            "messages": self.options.latency_samples,
            "counted": [counted],
        }

    async def enqueue(self, name: str, one: Callable[[int], Awaitable[None]]) -> None:
        n = self.options.messages
        rates, counts = [], []
        for _ in range(self.options.runs):
            await empty_outbox(self.engine)
            started = time.monotonic()
            for number in range(n):
                await one(number)
            rates.append(n / (time.monotonic() - started))
            statuses = await outbox_statuses(self.engine)
            counts.append(sum(statuses.values()))
            self.results.check(statuses == {"pending": n}, f"{name}: outbox statuses {statuses}")
        await empty_outbox(self.engine)
        self.results.rate(name, rates, counts, n)

    async def enqueue_sql(self, number: int) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
                    " VALUES (:profile, :to_addrs, :subject, :body_text)"
                ),
                row(number),
            )

    async def enqueue_api(self, number: int) -> None:
        values = row(number)
        await enqueue_and_commit(
            self.engine,
            to=values["to_addrs"],
            subject=values["subject"],
            body_text=values["body_text"],
            profile=PROFILE,
        )


def content(number: int) -> MessageContent:
    values = row(number)
    return MessageContent(
        to=values["to_addrs"],
        cc=(),
        bcc=(),
        subject=values["subject"],
        body_text=values["body_text"],
        body_html=None,
        headers={},
        message_id=f"<bench.{number}@example.com>",
        attachments=(),
    )


# --- the report ------------------------------------------------------------------------------


async def machine(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        postgres = await connection.scalar(text("SHOW server_version"))
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "packages": versions,
    }


def table(figures: dict[str, dict[str, Any]]) -> str:
    labels = {
        "worker_1": "worker, 1 process",
        "worker_2": "worker, 2 processes",
        "limit": "limit: bare aiosmtplib",
        "enqueue_sql": "enqueue, plain SQL",
        "enqueue_api": "enqueue, Python API",
    }
    lines = [f"{'figure':<26} {'median':>10} {'min':>10} {'max':>10}  unit"]
    for key, label in labels.items():
        f = figures[key]
        numbers = f"{f['median']:>10.1f} {f['min']:>10.1f} {f['max']:>10.1f}"
        lines.append(f"{label:<26} {numbers}  msgs/s")
    lat = figures["latency"]
    lines.append(f"{'idle latency p50':<26} {lat['p50']:>10.1f} {lat['min']:>10.1f} {'':>10}  ms")
    lines.append(f"{'idle latency p99':<26} {lat['p99']:>10.1f} {'':>10} {lat['max']:>10.1f}  ms")
    return "\n".join(lines)


def report(results: Results, info: dict[str, Any], options: Options) -> dict[str, Any]:
    figures = results.figures
    limit = figures["limit"]["median"]
    ratios = {f"{key}/limit": figures[key]["median"] / limit for key in ("worker_1", "worker_2")}
    settings = {
        "messages": options.messages,
        "runs": options.runs,
        "latency_samples": options.latency_samples,
        "max_connections": options.connections,
        "smoke": options.smoke,
        "worker_env": WORKER_ENV,
        "message_bytes": len(render(SENDER, content(0)).data),
    }
    print(table(figures))
    print()
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}")
    print(f"\nmachine: {json.dumps(info)}\nsettings: {json.dumps(settings)}")
    return {
        "machine": info,
        "settings": settings,
        "figures": figures,
        "ratios": ratios,
        "checks": {"ok": not results.failures, "failures": results.failures},
    }


# --- main ------------------------------------------------------------------------------------


async def measure(options: Options, url: str, sink: SmtpSink, directory: Path) -> dict[str, Any]:
    engine = create_async_engine(url, pool_size=5)
    try:
        await add_profile(engine, sink, options.connections)
        bench = Bench(options, engine, url, sink, Fernet.generate_key().decode(), directory)
        info = await machine(engine)
        for processes in (1, 2):
            print(f"worker throughput, {processes} process(es) ...", flush=True)
            await bench.worker_throughput(processes)
        print("limit: bare aiosmtplib ...", flush=True)
        await bench.limit()
        print("idle latency ...", flush=True)
        await bench.latency()
        print("enqueue ...", flush=True)
        await bench.enqueue("enqueue_sql", bench.enqueue_sql)
        await bench.enqueue("enqueue_api", bench.enqueue_api)
        return report(bench.results, info, options)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    url = fresh_database(server_url(), options.database)
    with SmtpSink() as sink, tempfile.TemporaryDirectory(prefix="bench-") as directory:
        results = asyncio.run(measure(options, url, sink, Path(directory)))
    options.json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {options.json_path}")
    if not results["checks"]["ok"]:
        print(f"{len(results['checks']['failures'])} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
