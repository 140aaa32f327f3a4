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

from worker.db import create_engine, resolve_database_url
from worker.errors import ConfigurationError, MailWorkerError
from worker.logs import configure_logging
from worker.repository import Repository
from worker.settings import Settings, load_settings

__all__ = ["CliContext", "pass_cli", "run_async"]

T = TypeVar("T")
P = ParamSpec("P")


class CliContext:
    """Built once per command line; settings are read on first use, then kept."""

    def __init__(self, *, config_file: Path | None) -> None:
        self._config_file = config_file
        self._settings: Settings | None = None
        self._url: str | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self._config_file)
            except ConfigurationError as exc:
                raise click.ClickException(str(exc)) from None
            configure_logging(log_format=self._settings.log_format, level=self._settings.log_level)
        return self._settings

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
    """Pass a command its :class:`CliContext`; the service's own errors end it in one line.

    Also those raised outside :func:`run_async`, e.g. by loading the secret keys before the
    command's event loop starts: a person gets the error's text, not a traceback.
    """

    @functools.wraps(command)
    def guarded(cli: CliContext, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(cli, *args, **kwargs)
        except MailWorkerError as exc:
            raise click.ClickException(str(exc)) from None

    return _find_cli(guarded)


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; the service's own errors become a clean one-line failure."""
    try:
        return asyncio.run(make())
    except MailWorkerError as exc:
        raise click.ClickException(str(exc)) from None
