"""The ``mailworker`` command: the root group and the commands that need no sub-group."""

from __future__ import annotations

import json
from pathlib import Path

import click
import structlog

from worker import __version__
from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.reference import REFERENCE_PATH, settings_reference
from worker.devmail import DEV_PROFILE, ensure_dev_profile
from worker.migrate import upgrade

__all__ = ["main"]

log = structlog.get_logger("worker.cli")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Settings file (TOML). Default: $MAILWORKER_CONFIG_FILE, if set.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show the command's log lines too (a worker's always show).",
)
@click.option("--debug", is_flag=True, help="Debug logs, and a traceback with every error.")
@click.version_option(__version__, prog_name="mailworker")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, verbose: bool, debug: bool) -> None:
    """Send notification e-mail from a PostgreSQL outbox through SMTP mailbox accounts.

    Exit codes: 0 done; 1 done, and the answer is no (not delivered, check failed); 2 what
    was asked for is wrong (unknown profile, preset or id, bad value); 3 send-test still
    waiting; 4 the command could not do its work (database, settings, keys); 5 run stopped
    with results in its journal.
    """
    ctx.obj = CliContext(config_file=config_file, verbose=verbose, debug=debug)


@main.group("config")
def config_group() -> None:
    """Inspect the settings."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of aligned text.")
@pass_cli
def config_show(cli: CliContext, as_json: bool) -> None:
    """Print the effective settings, secrets masked."""
    effective = cli.settings.effective()
    if as_json:
        click.echo(json.dumps(effective, indent=2))
        return
    width = max(len(name) for name in effective)
    for name, value in effective.items():
        click.echo(f"{name:<{width}}  {'' if value is None else value}")


@config_group.command("reference", short_help="Print the configuration reference (Markdown).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help=f"Write it to this file (the repository keeps it in {REFERENCE_PATH}).",
)
def config_reference(output: Path | None) -> None:
    """Print the configuration reference (Markdown), generated from the settings."""
    if output is None:
        click.echo(settings_reference(), nl=False)
        return
    output.write_text(settings_reference(), encoding="utf-8")
    click.echo(f"wrote {output}")


@main.command("migrate")
@click.option(
    "--dev-profile",
    is_flag=True,
    help=(
        "Development: also make the profile 'local' of `run --dev-smtp` (a capture server on"
        " 127.0.0.1) while there is no profile, so it exists before the first worker."
    ),
)
@pass_cli
def migrate(cli: CliContext, dev_profile: bool) -> None:
    """Create or upgrade the database schema to the newest version."""
    upgrade(cli.database_url(), cli.settings.db_schema)
    log.info("database_migrated", schema=cli.settings.db_schema)
    click.echo(f"database schema {cli.settings.db_schema!r} is up to date")
    if dev_profile:
        done = run_async(lambda: _dev_profile(cli))
        click.echo(f"development profile {DEV_PROFILE!r}: {done}")


async def _dev_profile(cli: CliContext) -> str:
    engine = cli.engine()
    try:
        return await ensure_dev_profile(engine)
    finally:
        await engine.dispose()


# Sub-command groups live in their own modules and attach themselves to ``main``.
from worker.cli import (  # noqa: E402
    authorize,
    console,
    enqueue,
    maintenance,
    messages,
    profiles,
    run,
    send_test_command,
    status,
)
from worker.cli.database_url import config_database_url  # noqa: E402

main.add_command(profiles.profiles)
profiles.profiles.add_command(authorize.authorize)
main.add_command(enqueue.enqueue)
main.add_command(run.run)
main.add_command(send_test_command.send_test)
main.add_command(status.status)
main.add_command(console.console)
main.add_command(messages.messages)
main.add_command(maintenance.purge)
main.add_command(maintenance.secrets)
config_group.add_command(config_database_url)
