"""What every ``mailworker`` command shares: settings, logging, the database, error handling."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.cli.exits import CommandFailed, UsageProblem
from worker.database_errors import explain
from worker.db import DATABASE_ERRORS, create_engine, resolve_database_url
from worker.errors import InvalidMessage, InvalidProfile, MailWorkerError, ProfileNotFound
from worker.logs import configure_logging
from worker.repository import Repository
from worker.settings import Settings, load_settings

__all__ = ["CliContext", "pass_cli", "run_async"]

T = TypeVar("T")
P = ParamSpec("P")


class CliContext:
    """Built once per command line; settings are read on first use, then kept.

    ``verbose``: the command's log lines go to the terminal too (they are hidden otherwise,
    unless JSON logs are asked for). ``debug``: debug logs, and a traceback with every error.
    """

    def __init__(
        self, *, config_file: Path | None, verbose: bool = False, debug: bool = False
    ) -> None:
        self._config_file = config_file
        self._settings: Settings | None = None
        self._url: str | None = None
        self.verbose = verbose
        self.debug = debug
        # `run` sets this: a worker's log is its output.
        self.logs_are_output = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._config_file)
            configure_logging(log_format=self._settings.log_format, level=self._log_level())
        return self._settings

    def _log_level(self) -> str:
        """A command prints its answer; its log lines are for those who ask for them."""
        assert self._settings is not None
        if self.debug:
            return "debug"
        wanted = self.verbose or self.logs_are_output or self._settings.log_format == "json"
        return self._settings.log_level if wanted else "error"

    @property
    def resolved_url(self) -> str | None:
        """The database URL, if this command has resolved it already (for error messages)."""
        if self._url is not None:
            return self._url
        if self._settings is not None and self._settings.database_url is not None:
            return self._settings.database_url.get_secret_value()
        return None

    def database_url(self) -> str:
        """The database URL, starting the embedded server first when none is configured."""
        if self._url is None:
            self._url = resolve_database_url(self.settings)
        return self._url

    def engine(self) -> AsyncEngine:
        """A new engine; call inside the command's event loop and dispose of it there."""
        return create_engine(self.settings, self.database_url())

    @contextlib.asynccontextmanager
    async def repository(self) -> AsyncIterator[Repository]:
        """A repository over one transaction, committed when the block ends without error."""
        engine = self.engine()
        try:
            async with engine.begin() as connection:
                yield Repository(connection)
        finally:
            await engine.dispose()


_find_cli = click.make_pass_decorator(CliContext)


def pass_cli(command: Callable[Concatenate[CliContext, P], T]) -> Callable[P, T]:
    """Pass a command its :class:`CliContext`; whatever stops it ends it in one line.

    The service's own errors and the database's, raised anywhere in the command: a person
    gets what went wrong, where and what to do, and the exit code of docs/operations.md
    (2: what was asked for is wrong; 4: the command could not do its work). ``--debug``
    shows the traceback instead.
    """

    @functools.wraps(command)
    def guarded(cli: CliContext, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(cli, *args, **kwargs)
        except (MailWorkerError, *DATABASE_ERRORS) as exc:
            if cli.debug:
                raise
            raise _one_line(exc, cli.resolved_url) from None

    return _find_cli(guarded)


def _one_line(exc: BaseException, url: str | None) -> click.ClickException:
    if isinstance(exc, ProfileNotFound | InvalidProfile | InvalidMessage):
        return UsageProblem(str(exc))
    if isinstance(exc, MailWorkerError):
        return CommandFailed(str(exc))
    return CommandFailed(explain(exc, url))


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine (its errors are :func:`pass_cli`'s to report)."""
    return asyncio.run(make())
