"""The chaos run's workers: ``python -m worker run`` processes, killed and replaced by name.

Every process gets a name of its own (``chaos-<slot>-<start>``), also a replacement in the
same slot: the lease of a row names its worker, and a new process under the old name would
renew (and so keep) the rows its killed predecessor held.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Fleet"]

REPO_ROOT = Path(__file__).resolve().parent.parent


class Fleet:
    """``size`` worker processes; :meth:`kill_one` SIGKILLs one and starts its replacement."""

    def __init__(
        self, *, size: int, env: Mapping[str, str], directory: Path, rng: random.Random
    ) -> None:
        self._size = size
        self._env = dict(env)
        self._directory = directory
        self._rng = rng
        self._starts = 0
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.exited: dict[str, int] = {}  # name -> exit code, of those not killed by us

    def start_all(self) -> None:
        for slot in range(self._size):
            self._start(slot)

    def _start(self, slot: int) -> str:
        self._starts += 1
        name = f"chaos-{slot}-{self._starts}"
        env = {**os.environ, **self._env, "MAILWORKER_WORKER_NAME": name}
        with (self._directory / f"{name}.log").open("wb") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return name

    def kill_one(self) -> str:
        """SIGKILL a worker picked at random (seeded); returns its name. No replacement yet."""
        name = self._rng.choice(sorted(self.running))
        process = self.running.pop(name)
        process.kill()
        process.wait(timeout=10)
        return name

    def _started(self, name: str) -> bool:
        log = (self._directory / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return '"worker_started"' in log or self.running[name].poll() is not None

    def replace(self, name: str) -> str:
        """Start a new worker in the slot of ``name``; returns the new name."""
        return self._start(int(name.split("-")[1]))

    def check(self) -> None:
        """Note workers that exited on their own (a crash is a finding) and replace them."""
        for name, process in list(self.running.items()):
            if process.poll() is not None:
                self.exited[name] = process.returncode
                del self.running[name]
                self.replace(name)

    def stop_all(self, grace: float) -> dict[str, int]:
        """SIGTERM every worker, wait up to ``grace`` s each, then SIGKILL; exit codes by name.

        A worker still starting up is given ``grace`` s to finish that first: before it has
        set up its signal handlers SIGTERM just ends it (-15), which is not the shutdown
        this run means to check.
        """
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not all(map(self._started, self.running)):
            time.sleep(0.1)
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.running.items():
            try:
                codes[name] = process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.running.clear()
        return codes
