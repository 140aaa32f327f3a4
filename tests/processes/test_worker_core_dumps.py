"""A running ``mailworker run`` holds decrypted passwords, so it can leave no core dump."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.kit.processes import WorkerProcesses

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform != "linux", reason="reads the limits in /proc"),
]


def _core_file_limits(pid: int) -> list[str]:
    """The soft and hard "Max core file size" of process ``pid``."""
    limits = Path(f"/proc/{pid}/limits").read_text(encoding="ascii")
    [line] = [line for line in limits.splitlines() if line.startswith("Max core file size")]
    return re.split(r"\s{2,}", line.strip())[1:3]


async def test_the_running_worker_may_write_no_core_file(workers: WorkerProcesses) -> None:
    """The worker's own process reports "Max core file size 0 0" (soft and hard) in
    /proc/<pid>/limits once it has started."""
    worker = workers.start("no-core")
    await worker.wait_logged("worker_started", within=20)
    assert ["0", "0"] == await asyncio.to_thread(_core_file_limits, worker.popen.pid)
