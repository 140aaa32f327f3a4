"""Exit codes of the commands that answer a question (``send-test``, ``profiles check``), and
of ``run``.

Scripts and monitoring branch on them, so each answer has its own code and a failure of the
command itself (no database, unreadable settings) is never mistaken for "not delivered".
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

import click

__all__ = ["CommandFailed", "ExitCode", "UsageProblem", "command_errors"]


class ExitCode(enum.IntEnum):
    """The exit codes of every command; docs/operations.md has the table."""

    OK = 0  # done; delivered; the profile works
    NOT_OK = 1  # done, and the answer is no: not delivered, the check failed, not all done
    USAGE = 2  # what was asked for is wrong: an unknown profile, preset, id or option, a bad value
    STILL_WAITING = 3  # send-test: no answer before --timeout ran out
    ERROR = 4  # the command could not do its work: database, settings, secret keys
    RESULTS_JOURNALED = 5  # run: stopped with results in the journal; the next start writes them
    INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it


class UsageProblem(click.ClickException):
    """A mistake in what the command was asked to do; exits with :attr:`ExitCode.USAGE`."""

    exit_code = ExitCode.USAGE


class CommandFailed(click.ClickException):
    """The command could not do its work; exits with :attr:`ExitCode.ERROR`."""

    exit_code = ExitCode.ERROR


@contextlib.contextmanager
def command_errors() -> Iterator[None]:
    """Failures of the command itself exit with :attr:`ExitCode.ERROR`, not with 1.

    Errors that carry a code of their own (usage mistakes: 2) keep it; the database's errors
    go on to :func:`worker.cli.context.pass_cli`, which says where and what to do.
    """
    try:
        yield
    except click.ClickException as exc:
        if exc.exit_code != 1:
            raise
        raise CommandFailed(exc.message) from None
