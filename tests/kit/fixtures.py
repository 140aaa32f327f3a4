"""Fixtures of the kit: worker processes and a probe that reads their database, a private
PostgreSQL to stop and restart, and docs/security.md's roles."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from chaos.postgres import PrivatePostgres
from tests.kit.outbox_samples import add_profiles_at
from tests.kit.processes import Probe, WorkerProcesses
from tests.kit.roles import SETUP_BLOCKS, Roles, documented_sql, drop_roles
from worker.migrate import upgrade


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


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A migrated PostgreSQL of this test's own, to stop and restart; removed at teardown.

    Not under tmp_path: run as root, the server runs as another system user, and every pytest
    start makes /tmp/pytest-of-root private again (0700), which would lock that user out.
    """
    directory = Path(tempfile.mkdtemp(prefix="mailworker-pg-"))
    try:
        server = PrivatePostgres(directory)
        try:
            upgrade(server.url, "mail")
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def private_probe(private_postgres: PrivatePostgres) -> AsyncIterator[Probe]:
    probe = Probe(private_postgres.url)
    yield probe
    await probe.dispose()


@pytest.fixture
async def roles(database_url: str) -> AsyncIterator[Roles]:
    """docs/security.md's set-up run as the owner, plus a second producer ``crm_app``; the
    roles are dropped after the test."""
    await add_profiles_at(database_url)
    roles = Roles(database_url)
    try:
        admin = await roles.connect()
        try:
            blocks = documented_sql()
            for name in SETUP_BLOCKS:
                await admin.execute(roles.rename(blocks[name]))
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("the test database user may not create roles")
        await admin.execute(roles.rename("CREATE ROLE crm_app LOGIN IN ROLE mail_producer"))
        yield roles
    finally:
        await roles.close()
        await drop_roles(roles)
