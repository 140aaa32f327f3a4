"""Every command ends the same way for the same trouble: one line, the documented exit code.

The table below gives each command of ``mailworker`` arguments that make it do its normal
work; a test fails when a command is missing from it, so a new command is walked too.
Commands run in this process (click's runner) with human output: what a person sees.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import Result

from tests.kit.commands import cli
from tests.kit.processes import REPO_ROOT
from tests.kit.rows import insert_profile
from worker.cli import main
from worker.migrate import upgrade

# Arguments with which each command does its work (profile "biuro" and message 1 exist in
# the migrated database of the tests that need them).
COMMANDS: dict[str, list[str]] = {
    "config database-url": [],
    "config reference": [],
    "config show": [],
    "console users add": ["ewa", "--role", "viewer", "--password-stdin"],
    "console users list": [],
    "console users remove": ["ewa"],
    "enqueue": ["--profile", "biuro", "--to", "anna@example.com", "--subject", "T", "--body", "B"],
    "messages cancel": ["1"],
    "messages list": [],
    "messages retry": ["1"],
    "messages show": ["1"],
    "migrate": [],
    "profiles add": ["nowy", "--from", "nowy@example.com", "--host", "smtp.example.com",
                     "--auth", "none"],
    "profiles apply": ["{profiles_file}"],
    "profiles authorize": ["biuro"],
    "profiles check": ["biuro"],
    "profiles edit": ["biuro", "--display-name", "Biuro"],
    "profiles list": [],
    "profiles presets": [],
    "profiles remove": ["biuro"],
    "profiles set-default": ["biuro"],
    "profiles show": ["biuro"],
    "purge": ["--older-than", "30d"],
    "run": ["--until-empty"],
    "secrets rotate": [],
    "send-test": ["--profile", "biuro", "--to", "anna@example.com", "--timeout", "1"],
    "status": [],
}  # fmt: skip
# Commands that never open the database.
NO_DATABASE = {"config database-url", "config reference", "config show", "profiles presets"}
# `run` waits for an unreachable database instead of exiting: tested on its own below.
WAITS = {"run"}
# What a command reads from stdin to do its work.
INPUTS = {"console users add": "a long enough password\n"}
RELAY_FILE = """
[profiles.przekaznik]
from_address = "powiadomienia@example.com"
host = "relay.example.com"
port = 25
encryption = "none"
auth_method = "none"
"""


def leaf_commands(group: click.Group = main, prefix: str = "") -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            names += leaf_commands(command, f"{full} ")
        else:
            names.append(full)
    return names


def _invoke(env: dict[str, str], name: str, tmp_path: Path) -> Result:
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text(RELAY_FILE, encoding="utf-8")
    args = [a.format(profiles_file=profiles_file) for a in COMMANDS[name]]
    return cli(env, *name.split(), *args, input=INPUTS.get(name))


def _human(env: dict[str, str]) -> dict[str, str]:
    """The environment of a person at a terminal: no JSON logs asked for."""
    return {key: value for key, value in env.items() if key != "MAILWORKER_LOG_FORMAT"}


def _one_error_line(result: Result) -> str:
    """The one line a command printed; a worker's log lines before it are its output."""
    lines = [
        line
        for line in result.output.splitlines()
        if line.strip() and not line.startswith('{"worker"')
    ]
    assert isinstance(result.exception, SystemExit), result.output
    assert 1 == len(lines), result.output
    return lines[0]


def test_every_command_is_in_the_table() -> None:
    """A new command is walked by these tests too: it must be added to COMMANDS."""
    assert sorted(COMMANDS) == leaf_commands()


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - NO_DATABASE - WAITS))
def test_an_unreachable_database_is_one_line_naming_it(
    cli_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    """A refused port: exit 4 and one line naming the server and saying what to check."""
    env = {**_human(cli_env), "DATABASE_URL": "postgresql://mailworker@127.0.0.1:1/mail"}

    result = _invoke(env, name, tmp_path)

    line = _one_error_line(result)
    assert (4, True) == (result.exit_code, line.startswith("Error: cannot reach the database"))
    assert "127.0.0.1:1: connection refused" in line


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - NO_DATABASE - {"migrate"}))
def test_a_database_never_migrated_says_run_migrate(
    empty_database_url: str, cli_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    """An empty database: exit 4 and one line telling to run "mailworker migrate"."""
    env = {**_human(cli_env), "DATABASE_URL": empty_database_url}

    result = _invoke(env, name, tmp_path)

    line = _one_error_line(result)
    assert 4 == result.exit_code, line
    assert line.endswith('run "mailworker migrate"'), line


@pytest.mark.parametrize(
    "name",
    ["profiles show", "profiles edit", "profiles remove", "profiles set-default",
     "profiles check", "send-test", "enqueue"],
)  # fmt: skip
def test_an_unknown_profile_is_a_usage_mistake_everywhere(
    cli_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    """Naming a profile that does not exist exits 2 from every command, in one line."""
    env = _human(cli_env)
    args = [("nikt" if a == "biuro" else a) for a in COMMANDS[name]]

    result = cli(env, *name.split(), *args)

    line = _one_error_line(result)
    assert (2, True) == (result.exit_code, "'nikt'" in line), line


def test_an_unknown_preset_is_a_usage_mistake(cli_env: dict[str, str]) -> None:
    """``profiles add --preset`` with a name no preset has exits 2, naming the known ones."""
    result = cli(_human(cli_env), "profiles", "add", "x", "--preset", "nosuch", "--from", "a@wp.pl")

    line = _one_error_line(result)
    assert (2, True) == (result.exit_code, "gmail" in line), line


def test_an_unknown_message_id_is_a_usage_mistake(cli_env: dict[str, str]) -> None:
    """``messages show`` of an id no message has exits 2."""
    result = cli(_human(cli_env), "messages", "show", "424242")

    assert (2, "Error: no message has the id 424242") == (
        result.exit_code,
        _one_error_line(result),
    )


def test_human_output_carries_no_log_lines(cli_env: dict[str, str], database_url: str) -> None:
    """Without -v (and without JSON logs) a command prints its answer only; -v adds its log."""
    insert_profile(database_url, "biuro")
    args = ["profiles", "edit", "biuro", "--display-name", "Biuro Główne"]

    quiet = cli(_human(cli_env), *args)
    verbose = cli(_human(cli_env), "-v", "profiles", "edit", "biuro", "--display-name", "Biuro")

    assert (0, 0) == (quiet.exit_code, verbose.exit_code)
    assert "profile_updated" not in quiet.output
    assert "profile_updated" in verbose.output


def test_debug_shows_the_traceback(cli_env: dict[str, str]) -> None:
    """``--debug`` lets the original error through, with its traceback."""
    env = {**_human(cli_env), "DATABASE_URL": "postgresql://mailworker@127.0.0.1:1/mail"}

    result = cli(env, "--debug", "status")

    assert isinstance(result.exception, OSError)


def test_run_waits_for_an_unreachable_database_saying_so_once(cli_env: dict[str, str]) -> None:
    """``run`` against a refused port keeps waiting (a worker may start before its database),
    says so once, naming the server, and stops cleanly on SIGTERM."""
    env = {**cli_env, "DATABASE_URL": "postgresql://mailworker@127.0.0.1:1/mail"}
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "MAILWORKER_POLL_INTERVAL": "0.2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=4)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    log = output.decode()
    assert 0 == process.returncode, log
    assert 1 == log.count('"database_unavailable"'), log
    assert 1 == log.count('"listener_disconnected"'), log
    assert "cannot reach the database server 127.0.0.1:1: connection refused" in log


def test_run_on_a_database_never_migrated_exits_4_in_one_line(
    empty_database_url: str, cli_env: dict[str, str]
) -> None:
    """``run`` (and ``run --dev-smtp``) before ``migrate``: one line saying to migrate, exit 4."""
    env = {**_human(cli_env), "DATABASE_URL": empty_database_url}

    plain = cli(env, "run")
    dev = cli(env, "run", "--dev-smtp", "--dev-smtp-port", "0")

    for result in (plain, dev):
        line = _one_error_line(result)
        assert (4, True) == (result.exit_code, line.endswith('run "mailworker migrate"')), line


def test_run_on_an_older_schema_names_both_versions(
    empty_database_url: str, cli_env: dict[str, str]
) -> None:
    """A database at an older schema version: ``run`` says which, and which it needs."""
    upgrade(empty_database_url, "mail", "0004")
    env = {**_human(cli_env), "DATABASE_URL": empty_database_url}

    result = cli(env, "run")

    line = _one_error_line(result)
    assert 4 == result.exit_code
    assert "is at version 0004; this mailworker needs 0008" in line, line
