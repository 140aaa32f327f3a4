"""The command-line help reads whole: no description cut off, every option explained."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from worker.cli import main


def _groups(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _groups(command, (*path, name))
    return found


def _commands(group: click.Group = main) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        found += _commands(command) if isinstance(command, click.Group) else [command]
    return found


@pytest.mark.parametrize("path", _groups(), ids=lambda path: " ".join(path) or "mailworker")
def test_no_command_description_is_cut_off(path: tuple[str, ...]) -> None:
    """On an 80-column terminal each command's line in its group's help is whole (no '...')."""
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    assert 0 == result.exit_code
    commands = result.output.split("Commands:", 1)[-1]
    cut = [line.strip() for line in commands.splitlines() if line.rstrip().endswith("...")]
    assert [] == cut


def test_every_option_has_help() -> None:
    """Each option of each command says what it does."""
    missing = [
        f"{command.name} {option.opts[0]}"
        for command in _commands()
        for option in command.params
        if isinstance(option, click.Option) and not option.help and not option.hidden
    ]
    assert [] == missing
