"""The CLI as the command tests run it: in this process (click's runner), with an environment."""

from __future__ import annotations

from click.testing import CliRunner, Result

from worker.cli import main

__all__ = ["cli", "failed", "ok"]


def cli(env: dict[str, str], *args: str, input: str | None = None, **extra_env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**env, **extra_env}, input=input)


def ok(env: dict[str, str], *args: str, input: str | None = None, **extra_env: str) -> Result:
    result = cli(env, *args, input=input, **extra_env)
    assert result.exit_code == 0, result.output
    return result


def failed(env: dict[str, str], *args: str, **extra_env: str) -> Result:
    """The command ran and ended with a non-zero exit code, not with a crash."""
    result = cli(env, *args, **extra_env)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result
