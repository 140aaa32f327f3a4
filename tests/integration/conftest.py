"""Fixtures for tests that run ``mailworker run`` as real worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.process_support import Probe, WorkerProcesses


@pytest.fixture
def workers(cli_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Start worker processes; any still running at teardown is killed (and its log shown)."""
    processes = WorkerProcesses(cli_env, tmp_path)
    try:
        yield processes
    finally:
        processes.kill_all()
        print(processes.report())  # shown by pytest only when the test failed


@pytest.fixture
async def probe(database_url: str) -> AsyncIterator[Probe]:
    """Reads the test database while workers run."""
    probe = Probe(database_url)
    yield probe
    await probe.dispose()
