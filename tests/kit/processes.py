"""Helpers for process-level tests: ``mailworker run`` as real processes, and their world.

- :class:`WorkerProcesses` starts ``python -m worker run`` with fast settings, its log (JSON
  lines) in a file; the ``workers`` fixture kills whatever is still running at teardown.
- :class:`Probe` reads the outbox of one database through a connection per query, so it
  works across a database restart.
- :func:`wait_until` polls a condition with short sleeps, within a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.kit.smtp_server import SmtpTestServer
from worker.models import outbox

__all__ = [
    "FAST_ENV",
    "Probe",
    "WorkerProcess",
    "WorkerProcesses",
    "enqueue_numbered",
    "received_message_ids",
    "wait_until",
]

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]

# Polls, housekeeping and retries in fractions of a second. Tests that need a lease to run
# out set MAILWORKER_LEASE_SECONDS=5, the shortest allowed.
FAST_ENV = {
    "MAILWORKER_POLL_INTERVAL": "0.2",
    "MAILWORKER_HOUSEKEEPING_INTERVAL": "0.5",
    "MAILWORKER_RETRY_BASE": "0.05",
    "MAILWORKER_RETRY_FACTOR": "1",
    "MAILWORKER_RETRY_CAP": "0.1",
    "MAILWORKER_LEASE_SECONDS": "30",
    "MAILWORKER_SHUTDOWN_GRACE": "5",
}


# --- waiting ---------------------------------------------------------------------------------


async def wait_until(
    condition: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    interval: float = 0.05,
    context: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Fails the test with ``what``, the last value and ``context()`` after ``within`` seconds.
    """
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s (last: {value!r}){context()}")
        await asyncio.sleep(interval)


# --- worker processes ------------------------------------------------------------------------


class WorkerProcess:
    """One ``mailworker run`` process; its stdout and stderr go to ``log_path``."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.signalled = False  # the test told it to stop, so its exit is no surprise

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.name} pid={self.popen.pid} rc={self.popen.returncode}>"

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def events(self) -> list[dict[str, Any]]:
        """The log so far, one dict per JSON line (other lines as ``{"raw": line}``)."""
        parsed = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"raw": line}
            parsed.append(event if isinstance(event, dict) else {"raw": line})
        return parsed

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    def log_tail(self, lines: int = 30) -> str:
        text_ = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text_.splitlines()[-lines:])

    def describe(self) -> str:
        """For failure messages: the state and the end of the log."""
        return f"\n--- {self!r}, log tail:\n{self.log_tail()}"

    async def wait_logged(self, event: str, within: float = 15.0) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            matches = self.logged(event)
            if not matches and not self.running:
                raise AssertionError(f"{self.name} exited before logging {event}{self.describe()}")
            return matches[0] if matches else None

        return await wait_until(
            found, within=within, what=f"{self.name} logs {event}", context=self.describe
        )

    def send_signal(self, signum: signal.Signals) -> None:
        self.signalled = True
        self.popen.send_signal(signum)

    async def wait_exit(self, within: float) -> int:
        """The exit code; fails the test if the process is still running after ``within`` s."""

        async def exited() -> bool:
            return not self.running

        await wait_until(exited, within=within, what=f"{self.name} exits", context=self.describe)
        assert self.popen.returncode is not None
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL and reap, if still running."""
        if self.running:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


class WorkerProcesses:
    """Starts worker processes for one test; :meth:`kill_all` ends those still running."""

    def __init__(self, base_env: Mapping[str, str], directory: Path) -> None:
        self._base_env = dict(base_env)
        self._directory = directory
        self.started: list[WorkerProcess] = []

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> WorkerProcess:
        """``python -m worker run *args`` named ``name``; ``env`` overrides the defaults."""
        full_env = {
            **os.environ,
            **self._base_env,
            **FAST_ENV,
            "MAILWORKER_WORKER_NAME": name,
            **(env or {}),
        }
        log_path = self._directory / f"worker-{name}-{len(self.started)}.log"
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", "worker", "run", *args],
                cwd=REPO_ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        process = WorkerProcess(name, popen, log_path)
        self.started.append(process)
        return process

    def assert_running(self) -> None:
        """Fail at once if a worker exited that the test did not stop."""
        for process in self.started:
            if not process.signalled and not process.running:
                raise AssertionError(f"{process.name} exited on its own{process.describe()}")

    async def wait_sent(self, probe: Probe, count: int, within: float) -> None:
        """Wait until the outbox holds exactly ``count`` rows, all of them 'sent'."""

        async def all_sent() -> bool:
            self.assert_running()
            return await probe.all_sent(count)

        await wait_until(all_sent, within=within, what=f"all {count} sent", context=self.report)

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()

    def report(self) -> str:
        return "".join(process.describe() for process in self.started)


# --- the database ----------------------------------------------------------------------------


class Probe:
    """Reads and writes one test database, opening a connection per call (restart-proof)."""

    def __init__(self, url: str) -> None:
        self._engine = create_async_engine(url, poolclass=NullPool)

    async def dispose(self) -> None:
        await self._engine.dispose()

    async def query(self, statement: str, **params: Any) -> list[Any]:
        async with self._engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    async def statuses(self) -> dict[str, int]:
        rows = await self.query("SELECT status, count(*) FROM mail.outbox GROUP BY status")
        return {status: count for status, count in rows}

    async def all_sent(self, count: int) -> bool:
        return {"sent": count} == await self.statuses()

    async def rows(self) -> dict[int, Any]:
        """Every outbox row by id: status, attempts, message_id, to_addrs."""
        rows = await self.query(
            "SELECT id, status, attempts, message_id, to_addrs FROM mail.outbox ORDER BY id"
        )
        return {row.id: row for row in rows}

    async def attempts(self) -> list[Any]:
        return await self.query(
            "SELECT outbox_id, attempt_no, worker_id, outcome, error FROM mail.attempt ORDER BY id"
        )

    async def other_backends(self) -> int:
        """Connections to this database other than the probe's own."""
        [(count,)] = await self.query(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(count)

    async def listener_pids(self) -> list[int]:
        """Backends of this database whose last statement was a LISTEN (the worker's)."""
        rows = await self.query(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        return [pid for (pid,) in rows]


async def enqueue_numbered(
    url: str, count: int, *, start: int = 0, subject: str = "Wiadomość testowa"
) -> list[int]:
    """``count`` messages to ``r<n>@example.com`` each, so the server can tell them apart."""
    engine = create_async_engine(url, poolclass=NullPool)
    rows = [
        {
            "profile": "test",
            "to_addrs": [f"r{number}@example.com"],
            "subject": f"{subject} {number}",
            "body_text": "Treść wiadomości.",
        }
        for number in range(start, start + count)
    ]
    try:
        async with engine.begin() as connection:
            result = await connection.execute(outbox.insert().returning(outbox.c.id), rows)
            return [id_ for (id_,) in result]
    finally:
        await engine.dispose()


def received_message_ids(server: SmtpTestServer) -> collections.Counter[str]:
    """How often each Message-ID arrived at the server."""
    return collections.Counter(
        str(email.message_from_bytes(m.data, policy=email.policy.default)["Message-ID"])
        for m in server.messages
    )
