"""``mailworker run``: the delivery worker in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.exits import ExitCode
from worker.crypto import load_cipher
from worker.db import asyncpg_dsn, create_engine
from worker.devmail import DEV_PORT, dev_smtp
from worker.process_limits import disable_core_dumps
from worker.worker import Worker

__all__ = ["run"]


@click.command("run", short_help="Run the delivery worker until SIGTERM or SIGINT.")
@click.option(
    "--until-empty",
    is_flag=True,
    help="Exit once nothing is due and nothing is in flight (batch jobs).",
)
@click.option(
    "--dev-smtp",
    "with_dev_smtp",
    is_flag=True,
    help=(
        "Development only: while there is no profile, also run a capture SMTP server on"
        " 127.0.0.1 and a profile 'local' that sends to it; each message is kept as an .eml"
        " file under <data dir>/devmail/ and never delivered."
    ),
)
@click.option(
    "--dev-smtp-port",
    type=click.IntRange(0, 65535),
    default=DEV_PORT,
    show_default=True,
    help="Port of the --dev-smtp server (0: any free port).",
)
@pass_cli
def run(cli: CliContext, until_empty: bool, with_dev_smtp: bool, dev_smtp_port: int) -> None:
    """Send the outbox until SIGTERM or SIGINT; in-flight sends finish within the grace period.

    Exits 0 once stopped; 5 if the database could not take every result before the exit:
    they are in the journal under the data folder, and the next start writes them; 4 if the
    journal could not be written either.
    """
    cli.logs_are_output = True
    settings = cli.settings
    disable_core_dumps()  # once logging is set up; before any key or password is read
    url = cli.database_url()
    cipher = load_cipher(settings)

    async def serve() -> int:
        engine = create_engine(settings, url)
        worker = Worker(
            engine=engine,
            listen_dsn=asyncpg_dsn(url),
            settings=settings,
            cipher=cipher,
            until_empty=until_empty,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        capture = (
            dev_smtp(
                engine,
                data_dir=settings.data_dir,
                port=dev_smtp_port,
                max_bytes=2 * settings.max_message_bytes,  # base64 makes attachments 4/3 as big
            )
            if with_dev_smtp
            else contextlib.nullcontext()
        )
        try:
            async with capture:  # closed after the worker: in-flight sends to it finish first
                await worker.run()
        finally:
            await engine.dispose()
        if worker.results_lost:
            return ExitCode.ERROR
        return ExitCode.RESULTS_JOURNALED if worker.results_journaled else ExitCode.OK

    # Stopped while the database was out of reach: results wait in the journal (5), or could
    # not even be journaled (4, logged as results_lost with the ids of the sent messages).
    code = run_async(serve)
    if code != ExitCode.OK:
        raise SystemExit(code)
