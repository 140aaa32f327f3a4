"""Worker processes for the benchmark, waiting on conditions, and what /proc says of a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.database import REPO_ROOT
from bench.sink import SmtpSink

__all__ = [
    "WORKER_ENV",
    "Workers",
    "cpu_seconds",
    "peak_rss_bytes",
    "wait_count",
    "wait_for",
    "workers",
]

# The worker's settings for the benchmark: a short poll, otherwise the defaults.
WORKER_ENV = {
    "MAILWORKER_POLL_INTERVAL": "0.1",
    "MAILWORKER_LOG_FORMAT": "json",
    "MAILWORKER_LOG_LEVEL": "info",
    "MAILWORKER_SHUTDOWN_GRACE": "5",
}


class Workers:
    """``count`` idle ``python -m worker run`` processes; their logs go to ``directory``."""

    def __init__(
        self,
        url: str,
        secret_key: str,
        directory: Path,
        count: int,
        settings: Mapping[str, str] = WORKER_ENV,
    ) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        for index in range(count):
            env = {
                **os.environ,
                **settings,
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

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

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
def workers(
    url: str,
    secret_key: str,
    directory: Path,
    count: int,
    settings: Mapping[str, str] = WORKER_ENV,
) -> Iterator[Workers]:
    started = Workers(url, secret_key, directory, count, settings)
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


async def wait_count(
    sink: SmtpSink, count: int, within: float, check: Callable[[], None], interval: float = 0.01
) -> None:
    """Until the sink has accepted ``count`` messages.

    Rates are timed by the sink's own clock (``last_at``), so how often this looks changes no
    figure; looking rarely keeps the bench's CPU off the cores the senders share.
    """

    async def arrived() -> bool:
        check()
        return sink.count >= count

    await wait_for(arrived, within=within, what=f"{count} messages at the sink", interval=interval)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # The command name (field 2) may hold spaces; the fields after its ")" are plain numbers.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    """The peak resident set size of ``pid`` (``VmHWM`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            kilobytes = int(line.split()[1])
            return kilobytes * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")
