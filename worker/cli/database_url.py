"""``mailworker config database-url``: the database URL in libpq's form, for psql and pg_dump."""

from __future__ import annotations

import click

from worker.cli.context import CliContext, pass_cli
from worker.database_url import libpq_url
from worker.db import embedded_database_url
from worker.errors import ConfigurationError
from worker.settings import mask_url_password

__all__ = ["config_database_url"]


@click.command("database-url", short_help="Print the database URL as psql and pg_dump take it.")
@click.option(
    "--with-password",
    is_flag=True,
    help='Print the password as well, not ***: for pg_dump "$(mailworker config database-url'
    ' --with-password)".',
)
@pass_cli
def config_database_url(cli: CliContext, with_password: bool) -> None:
    """Print the database URL for psql and pg_dump.

    DATABASE_URL (or DATABASE_URL_FILE) in any accepted form, as libpq's tools take it: a
    postgresql:// URL with libpq's parameters only, the password masked unless asked for.
    Without DATABASE_URL, the embedded server's URL, while the server runs.
    """
    settings = cli.settings
    if settings.database_url is not None:
        url = libpq_url(settings.database_url.get_secret_value())
    else:
        embedded = embedded_database_url(settings.data_dir)
        if embedded is None:
            raise ConfigurationError(
                f"DATABASE_URL is not set and the embedded PostgreSQL under {settings.data_dir}"
                " is not running; it runs while a mailworker command uses it, e.g. make run"
            )
        url = embedded
    click.echo(url if with_password else mask_url_password(url))
