"""Fixtures shared by every test tier.

Integration tests get a database of their own, cloned from a template that the migrations
built once per run. The server is ``DATABASE_URL`` when it is set (any database on it; the
tests create their own beside it), otherwise the embedded PostgreSQL under ``.data/``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from worker.db import async_url
from worker.embedded_db import start_embedded_postgres
from worker.migrate import upgrade
from worker.settings import Settings

pytest_plugins = [
    "pytester",
    "tests.kit.smtp_fixtures",
    # The local OAuth 2.0 authorisation server (Microsoft and Google sign-in) per test.
    "tests.kit.oauth_fixtures",
    "tests.kit.provider_servers",
    # A private Postfix instance (Debian's package) for the interoperability tests.
    "tests.kit.postfix",
    "tests.kit.secret_scan",
    # Worker processes, private databases and producer roles for the process tier.
    "tests.kit.fixtures",
    # The console as a process, Chromium and the screenshots of the browser tests.
    "tests.kit.console_browser",
    # The console in this process, through Starlette's TestClient (the client fixture).
    "tests.kit.console_client",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = f"mailworker_template_{os.getpid()}"


# A DATABASE_URL given to the test run names the server only. It leaves the environment, since
# settings let the environment win over arguments (as production wants): left there, it
# would replace the database of every test that builds its own settings. The processes of
# a parallel run (pytest-xdist) start after this has run in the main one, so the server they
# use is handed to them under a name of the tests' own.
_SERVER_VARIABLE = "TESTS_POSTGRES_SERVER_URL"
_GIVEN_DATABASE_URL = os.environ.pop("DATABASE_URL", None)


def _server_url() -> str:
    if _GIVEN_DATABASE_URL:
        return async_url(_GIVEN_DATABASE_URL)
    if os.environ.get(_SERVER_VARIABLE):
        return os.environ[_SERVER_VARIABLE]
    return start_embedded_postgres(REPO_ROOT / ".data")


def pytest_configure(config: pytest.Config) -> None:
    """In the main process of a parallel run: the server for every test process.

    Two test processes starting the embedded server at once race to create its data folder,
    so the main process starts it, before the test processes exist; it stops when this
    process exits. A given DATABASE_URL is passed on as it is.
    """
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    os.environ[_SERVER_VARIABLE] = _server_url()


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def server_url() -> str:
    """A URL of the PostgreSQL server the tests run against."""
    return _server_url()


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    """A database migrated to the newest schema, cloned by each test that needs one."""
    asyncio.run(
        _admin(server_url, f"DROP DATABASE IF EXISTS {TEMPLATE}", f"CREATE DATABASE {TEMPLATE}")
    )
    upgrade(_with_database(server_url, TEMPLATE), "mail")
    yield TEMPLATE
    asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    name = f"mailworker_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f"CREATE DATABASE {name}"))
    yield _with_database(server_url, name)
    asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """URL of a database of this test's own, already migrated."""
    name = f"mailworker_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f"CREATE DATABASE {name} TEMPLATE {template_database}"))
    yield _with_database(server_url, name)
    asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(database_url: str, secret_key: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database, with a secret key of its own."""
    return Settings(database_url=database_url, secret_key=secret_key, data_dir=tmp_path / "data")


@pytest.fixture
def cli_env(database_url: str, secret_key: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running ``mailworker`` against this test's database."""
    return {
        "DATABASE_URL": database_url,
        "MAILWORKER_SECRET_KEY": secret_key,
        "MAILWORKER_DATA_DIR": str(tmp_path / "data"),
        "MAILWORKER_LOG_FORMAT": "json",
    }


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that the test may commit or leave to roll back."""
    async with engine.connect() as connection:
        yield connection


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A command run in this process points logging at its runner's stderr and sets its level;
    put ours back after every test, so no test depends on which ran before it in its process
    (the suite runs in several processes, in an order of pytest-xdist's choosing)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
