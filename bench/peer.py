"""The peer: django-post_office's ``send_queued_mail --processes=1`` against the same sink.

It runs with its defaults in a database of its own beside the bench database, on the same
PostgreSQL server, and sends the same 1 KB messages; in the latency mode, from as many
threads as the worker has connections.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench.database import REPO_ROOT, create_database
from bench.measurements import Bench
from bench.processes import wait_count

__all__ = ["Peer", "peer_throughput", "prepare_peer"]

_SENT = 0  # post_office's STATUS.sent


class Peer:
    """post_office's database and the environment its commands run in."""

    def __init__(self, url: str, sink_port: int, directory: Path) -> None:
        parsed = make_url(url)
        self.url = url
        self.directory = directory
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.post_office_site.settings",
            "BENCH_PEER_DB_NAME": parsed.database or "",
            # The embedded server listens on a socket only, named by the URL's ?host=.
            "BENCH_PEER_DB_HOST": parsed.host or str(parsed.query.get("host", "127.0.0.1")),
            "BENCH_PEER_DB_PORT": str(parsed.port or 5432),
            "BENCH_PEER_DB_USER": parsed.username or "",
            "BENCH_PEER_DB_PASSWORD": parsed.password or "",
            "BENCH_PEER_SINK_PORT": str(sink_port),
        }

    def against(self, sink_port: int, threads: int) -> Peer:
        """The same database, sending to ``sink_port`` from ``threads`` threads."""
        peer = Peer(self.url, sink_port, self.directory)
        peer.env["BENCH_PEER_THREADS"] = str(threads)
        return peer

    def run(self, *arguments: str) -> None:
        """A command to its end; its output goes to ``peer.log``."""
        with (self.directory / "peer.log").open("ab") as log:
            subprocess.run(  # noqa: S603 - the benchmark's own commands, never user input
                [sys.executable, *arguments],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=600,
            )

    def start_sending(self) -> subprocess.Popen[bytes]:
        lockfile = self.directory / "post_office.lock"
        with (self.directory / "peer.log").open("ab") as log:
            return subprocess.Popen(  # noqa: S603 - a fixed command; the path is our own
                [
                    sys.executable,
                    "-m",
                    "django",
                    "send_queued_mail",
                    "--processes=1",
                    f"--lockfile={lockfile}",
                ],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def statuses(self) -> dict[int, int]:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(
                    text("SELECT status, count(*) FROM post_office_email GROUP BY status")
                )
                return {int(status): int(count) for status, count in result}
        finally:
            await engine.dispose()


def prepare_peer(server_url: str, name: str, sink_port: int, directory: Path) -> Peer:
    """A fresh database ``name`` with post_office's tables (its ``migrate``)."""
    peer = Peer(create_database(server_url, name), sink_port, directory)
    peer.run("-m", "django", "migrate", "--no-input")
    return peer


def _running(process: subprocess.Popen[bytes]) -> Callable[[], None]:
    def check() -> None:
        if process.poll() not in (None, 0):
            raise RuntimeError(f"send_queued_mail exited with {process.returncode}")

    return check


async def peer_throughput(bench: Bench, peer: Peer, messages: int, name: str = "peer") -> None:
    """``messages`` rows committed (``send_many``), then ``send_queued_mail`` started, to the
    last acceptance: the figure ``name``.

    The command's start-up (Python, Django) is part of its time, as it is where it runs from
    cron; ``peer_startup`` measures it alone, on an empty queue, for comparison.
    """
    n = messages
    await asyncio.to_thread(peer.run, "-m", "bench.post_office_site.enqueue", "0")
    began = time.monotonic()
    await asyncio.to_thread(_send_until_done, peer)
    startup = time.monotonic() - began
    rates, counts = [], []
    for _ in range(bench.options.runs):
        await asyncio.to_thread(peer.run, "-m", "bench.post_office_site.enqueue", str(n))
        bench.sink.reset()
        committed = time.monotonic()
        process = peer.start_sending()
        try:
            await wait_count(bench.sink, n, bench.deadline(n), _running(process))
            rates.append(n / (bench.sink.last_at - committed))
            counts.append(await bench.settle_and_check(name, n))
        finally:
            await asyncio.to_thread(_finish, process)
        statuses = await peer.statuses()
        bench.results.check(statuses == {_SENT: n}, f"{name}: post_office statuses {statuses}")
    bench.results.rate(name, rates, counts, n)
    bench.results.figures[name]["startup_seconds"] = startup


def _send_until_done(peer: Peer) -> None:
    process = peer.start_sending()
    _finish(process)


def _finish(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
