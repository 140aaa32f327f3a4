"""A database URL's TLS parameters mean what they mean to libpq, against a server with TLS on.

The server is a PostgreSQL of the system's installation (the embedded package's binaries are
built without OpenSSL), started for this module on 127.0.0.1 with a trustme certificate for
``localhost``. Each case connects twice with the same URL: through the service (the engine
that the commands, the worker and the migrations use) and through libpq itself (psql, given
the URL ``mailworker config database-url`` would print), and both must agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import trustme
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url

from worker.cli import main
from worker.database_url import libpq_url, with_scheme
from worker.db import DATABASE_ERRORS, engine_for_url
from worker.listener import Listener
from worker.migrate import upgrade

_SESSION = (
    "SELECT s.ssl, current_user, current_setting('port')"
    " FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
)


def _server_binaries() -> Path | None:
    """The bin folder of a PostgreSQL installation built with OpenSSL, if there is one."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    configure, bindir = (
        subprocess.run([pg_config, option], capture_output=True, text=True, check=False).stdout
        for option in ("--configure", "--bindir")
    )
    if "openssl" not in configure or not (Path(bindir.strip()) / "postgres").exists():
        return None
    return Path(bindir.strip())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class TlsServer:
    """Where the server listens, and the files a client needs."""

    port: int
    socket_dir: Path
    bindir: Path  # the installation's programs, psql among them (built with TLS)
    ca_file: Path  # the CA that signed the server's certificate
    other_ca_file: Path  # a CA that did not
    client_cert: Path  # for the role certuser, signed by the server's CA
    client_key: Path

    def url(
        self, params: str, *, host: str = "127.0.0.1", user: str = "postgres", db: str = "postgres"
    ) -> str:
        return f"postgresql://{user}@{host}:{self.port}/{db}?{params}"

    def socket_url(self, db: str = "postgres") -> str:
        """As the server's own user, over its socket: for setting up and looking."""
        return f"postgresql://postgres@/{db}?host={self.socket_dir}&port={self.port}"


@contextlib.contextmanager
def _running_server(bindir: Path, client_dir: Path) -> Iterator[TlsServer]:
    # Run by root, the server must run as another user, who owns its folder.
    owner = None
    if os.geteuid() == 0:
        owner = next(
            (name for name in ("postgres", "embedded_postgres") if _user_exists(name)), None
        )
        if owner is None:
            pytest.skip("no system user other than root to run PostgreSQL as")
    # Not under tmp_path: pytest makes that private to root.
    directory = Path(tempfile.mkdtemp(prefix="mailworker-tls-"))
    pgdata = directory / "data"
    try:
        if owner is not None:
            shutil.chown(directory, owner, owner)
        _run(owner, bindir / "initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "-N")
        ca, other_ca = trustme.CA(), trustme.CA()
        server_cert = ca.issue_cert("localhost")
        server_cert.cert_chain_pems[0].write_to_path(str(pgdata / "server.crt"))
        server_cert.private_key_pem.write_to_path(str(pgdata / "server.key"))
        ca.cert_pem.write_to_path(str(pgdata / "root.crt"))
        port = _free_port()
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{directory}'\nfsync = off\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "ssl_ca_file = 'root.crt'\n"
            )
        # certuser logs in with a client certificate over TLS only; everyone else freely.
        (pgdata / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all certuser 127.0.0.1/32 cert\n"
            "host all certuser 127.0.0.1/32 reject\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        (pgdata / "server.key").chmod(0o600)
        if owner is not None:
            for path in pgdata.iterdir():
                shutil.chown(path, owner, owner)
        _run(owner, bindir / "pg_ctl", "-D", pgdata, "-w", "-l", directory / "log", "start")
        client_cert = ca.issue_cert("certuser", common_name="certuser")
        client_cert.cert_chain_pems[0].write_to_path(str(client_dir / "client.crt"))
        client_cert.private_key_pem.write_to_path(str(client_dir / "client.key"))
        (client_dir / "client.key").chmod(0o600)  # libpq refuses a key others may read
        ca.cert_pem.write_to_path(str(client_dir / "ca.pem"))
        other_ca.cert_pem.write_to_path(str(client_dir / "other-ca.pem"))
        try:
            yield TlsServer(
                port=port,
                socket_dir=directory,
                bindir=bindir,
                ca_file=client_dir / "ca.pem",
                other_ca_file=client_dir / "other-ca.pem",
                client_cert=client_dir / "client.crt",
                client_key=client_dir / "client.key",
            )
        finally:
            _run(owner, bindir / "pg_ctl", "-D", pgdata, "-w", "-m", "immediate", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _run(owner: str | None, *command: str | Path) -> None:
    subprocess.run(
        [str(part) for part in command],
        user=owner,
        check=True,
        capture_output=True,
        timeout=60,
        cwd="/",
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """The module's PostgreSQL with TLS on, and the role certuser."""
    bindir = _server_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL installation with OpenSSL (pg_config) to start")
    with _running_server(bindir, tmp_path_factory.mktemp("tls-client")) as server:
        asyncio.run(_setup(server))
        yield server


async def _setup(server: TlsServer) -> None:
    connection = await asyncpg.connect(server.socket_url())
    try:
        await connection.execute("CREATE ROLE certuser LOGIN")
    finally:
        await connection.close()


@pytest.fixture(autouse=True)
def _no_client_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ~/.postgresql/root.crt nor PGSSL* variable decides a case: only the URL does."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    return home


async def _through_the_service(url: str) -> tuple[bool, str, str] | None:
    """(TLS in use, user, server port) of a session the service's engine opens; None: refused."""
    engine = engine_for_url(url)
    try:
        async with engine.connect() as connection:
            ssl, user, port = (await connection.execute(text(_SESSION))).one()
            return bool(ssl), str(user), str(port)
    except DATABASE_ERRORS:
        return None
    finally:
        await engine.dispose()


def _through_libpq(server: TlsServer, url: str) -> tuple[bool, str, str] | None:
    """The same through psql, with the URL in libpq's form; None: refused."""
    psql = server.bindir / "psql"
    result = subprocess.run(
        [psql, libpq_url(url), "--no-psqlrc", "-At", "-F", " ", "--command", _SESSION],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return None
    ssl, user, port = result.stdout.split()
    return ssl == "t", user, port


IP, NAME, PG = "127.0.0.1", "localhost", "postgres"  # the certificate names localhost only
FULL = "sslmode=verify-full&sslrootcert={ca}"
# (parameters, host, user, TLS expected, or None: refused); {ca}, {other}, {cert} and {key}
# stand for the files.
CASES = [
    pytest.param("sslmode=disable", IP, PG, False, id="disable"),
    pytest.param("sslmode=allow", IP, PG, False, id="allow-tries-plain-first"),
    pytest.param("sslmode=prefer", IP, PG, True, id="prefer"),
    pytest.param("sslmode=require", IP, PG, True, id="require-verifies-nothing"),
    pytest.param("ssl=true", IP, PG, True, id="ssl-true-is-require"),
    pytest.param("sslmode=require&sslrootcert={other}", IP, PG, None, id="require-with-wrong-ca"),
    pytest.param("sslmode=require&sslrootcert={ca}", IP, PG, True, id="require-with-right-ca"),
    pytest.param("sslmode=verify-ca", IP, PG, None, id="verify-ca-needs-a-ca"),
    pytest.param("sslmode=verify-ca&sslrootcert={ca}", IP, PG, True, id="verify-ca-not-the-name"),
    pytest.param("sslmode=verify-ca&sslrootcert={other}", IP, PG, None, id="verify-ca-wrong-ca"),
    pytest.param(FULL, IP, PG, None, id="verify-full-wrong-name"),
    pytest.param(FULL, NAME, PG, True, id="verify-full"),
    pytest.param(FULL + "&sslcert={cert}&sslkey={key}", NAME, "certuser", True, id="client-cert"),
    pytest.param(FULL, NAME, "certuser", None, id="no-client-cert"),
]


@pytest.mark.parametrize(("params", "host", "user", "expected_tls"), CASES)
async def test_each_sslmode_means_what_it_means_to_libpq(
    tls_server: TlsServer, params: str, host: str, user: str, expected_tls: bool | None
) -> None:
    """disable and allow connect in the clear (allow tries that first), prefer and require
    use TLS without checking the certificate unless sslrootcert is given, verify-ca checks the
    chain, verify-full also the host name, and sslcert/sslkey log in with a client
    certificate: the service connects exactly when psql does, with TLS exactly when psql
    uses it."""
    files = {
        "ca": tls_server.ca_file,
        "other": tls_server.other_ca_file,
        "cert": tls_server.client_cert,
        "key": tls_server.client_key,
    }
    url = tls_server.url(params.format(**files), host=host, user=user)

    service = await _through_the_service(url)
    libpq = await asyncio.to_thread(_through_libpq, tls_server, url)

    expected = None if expected_tls is None else (expected_tls, user, str(tls_server.port))
    assert expected == service
    assert expected == libpq


async def test_the_listener_verifies_the_server_as_the_engine_does(tls_server: TlsServer) -> None:
    """The worker's LISTEN connection takes a managed service's URL, TLS parameters and
    connect_timeout included: with verify-full and the right CA it listens (a NOTIFY wakes
    it), with the wrong CA it never connects."""
    full = "sslmode=verify-full&connect_timeout=10&sslrootcert="
    good = tls_server.url(f"{full}{tls_server.ca_file}", host="localhost")
    bad = tls_server.url(f"{full}{tls_server.other_ca_file}", host="localhost")
    assert (True, False) == (await _listens(good, tls_server), await _listens(bad, tls_server))


async def _listens(url: str, server: TlsServer) -> bool:
    """Whether a Listener on ``url`` is woken by a NOTIFY within a few seconds."""
    woken = asyncio.Event()
    calls = 0

    def notified() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:  # the first call is the listener's own, right after it connects
            woken.set()

    channel = f"tls_{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    task = asyncio.create_task(Listener(url, channel, notified).run(stop))
    try:
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.1)
        notifier = await asyncpg.connect(server.socket_url())
        try:
            await notifier.execute(f"NOTIFY {channel}")
        finally:
            await notifier.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), timeout=3)
        return woken.is_set()
    finally:
        stop.set()
        await task


def test_migrate_and_commands_connect_with_verify_full(
    tls_server: TlsServer, tmp_path: Path
) -> None:
    """``mailworker migrate`` (alembic's env.py) and an operator command run against a server
    that is verified in full, with the URL a managed database service hands out."""
    database = f"tls_{uuid.uuid4().hex[:8]}"
    asyncio.run(_execute(tls_server.socket_url(), f"CREATE DATABASE {database}"))
    params = f"sslmode=verify-full&sslrootcert={tls_server.ca_file}&connect_timeout=10"
    env = {
        "DATABASE_URL": tls_server.url(params, host="localhost", db=database),
        "MAILWORKER_DATA_DIR": str(tmp_path / "data"),
        "MAILWORKER_LOG_FORMAT": "json",
    }

    migrated = CliRunner().invoke(main, ["migrate"], env=env)
    status = CliRunner().invoke(main, ["status", "--json"], env=env)

    assert (0, 0) == (migrated.exit_code, status.exit_code), migrated.output + status.output
    assert {"outbox", "profile", "attempt"} <= asyncio.run(_tables(tls_server, database))


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def test_upgrade_runs_over_tls_with_a_client_certificate(tls_server: TlsServer) -> None:
    """The migrations connect as a role that may only log in with its certificate, given the
    URL as ``mailworker migrate`` gives it (postgresql+asyncpg://)."""
    database = f"tls_{uuid.uuid4().hex[:8]}"
    asyncio.run(_execute(tls_server.socket_url(), f"CREATE DATABASE {database} OWNER certuser"))
    params = (
        f"sslmode=verify-full&sslrootcert={tls_server.ca_file}"
        f"&sslcert={tls_server.client_cert}&sslkey={tls_server.client_key}"
    )
    url = tls_server.url(params, host="localhost", user="certuser", db=database)
    upgrade(with_scheme(url, "postgresql+asyncpg"), "mail")
    assert {"outbox", "profile", "attempt"} <= asyncio.run(_tables(tls_server, database))


async def _tables(server: TlsServer, database: str) -> set[str]:
    connection = await asyncpg.connect(server.socket_url(database))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'mail'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ("any", "first"),
        ("read-only", "first"),
        ("read-write", "second"),
        ("primary", "first"),
        ("standby", None),
    ],
)
async def test_target_session_attrs_chooses_among_several_hosts(
    tls_server: TlsServer, database_url: str, attrs: str, expected: str | None
) -> None:
    """Two hosts in one URL, the first read-only: any, read-only and primary take the first,
    read-write the second, standby neither (none is in recovery); the service picks the host
    psql picks."""
    local = make_url(database_url)
    if not local.host or local.host.startswith("/"):
        pytest.skip("the test server is reached through a socket, not a host:port")
    await _execute(tls_server.socket_url(), f"CREATE DATABASE {local.database}")
    await _execute(
        tls_server.socket_url(),
        f"ALTER DATABASE {local.database} SET default_transaction_read_only = on",
    )
    try:
        ports = {"first": str(tls_server.port), "second": str(local.port or 5432)}
        hosts = f"127.0.0.1:{ports['first']},{local.host}:{ports['second']}"
        url = (
            f"postgresql://{local.username}@{hosts}/{local.database}"
            f"?sslmode=disable&target_session_attrs={attrs}"
        )
        service = await _through_the_service(url)
        libpq = await asyncio.to_thread(_through_libpq, tls_server, url)
    finally:
        await _execute(tls_server.socket_url(), f"DROP DATABASE {local.database} WITH (FORCE)")
    port = None if expected is None else ports[expected]
    assert port == (service and service[2])
    assert port == (libpq and libpq[2])
