"""``mailworker run``: the delivery worker in the foreground."""

from __future__ import annotations

import asyncio
import signal

import click

from worker.cli.context import CliContext, pass_cli, run_async
from worker.crypto import load_cipher
from worker.db import asyncpg_dsn, create_engine
from worker.worker import Worker

__all__ = ["run"]


@click.command("run")
@click.option(
    "--until-empty",
    is_flag=True,
    help="Exit once nothing is due and nothing is in flight (batch jobs).",
)
@pass_cli
def run(cli: CliContext, until_empty: bool) -> None:
    """Send the outbox until SIGTERM or SIGINT; in-flight sends finish within the grace period."""
    settings = cli.settings
    url = cli.database_url()
    cipher = load_cipher(settings)

    async def serve() -> None:
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
        try:
            await worker.run()
        finally:
            await engine.dispose()

    run_async(serve)
