"""``mailworker console``: serve the web console, and manage who may sign in to it."""

from __future__ import annotations

import getpass
import sys

import click
import structlog

from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.exits import CommandFailed, UsageProblem
from worker.cli.output import moment_text, printable, table
from worker.console.auth import session_secret
from worker.console.passwords import hash_password, password_problem
from worker.console_users import ROLES, ConsoleUser
from worker.migrate import schema_problem
from worker.settings import split_address

__all__ = ["console"]

log = structlog.get_logger("worker.cli")


@click.group(
    "console", invoke_without_command=True, short_help="Serve the web console; manage its users."
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to serve it. Default: $MAILWORKER_CONSOLE_LISTEN, else 127.0.0.1:8080.",
)
@click.pass_context
def console(ctx: click.Context, listen: str | None) -> None:
    """Serve the web console (until Ctrl-C), or manage its users (`console users`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(_serve, listen=listen)


@pass_cli
def _serve(cli: CliContext, listen: str | None) -> None:
    try:
        host, port = split_address(listen or cli.settings.console_listen)
    except ValueError as exc:
        raise UsageProblem(f"--listen {exc}") from None
    cli.logs_are_output = True  # a server's log is its output, as a worker's is
    session_secret(cli.settings)  # no secret key: say so now, not at the first request
    url = cli.database_url()
    revision = run_async(lambda: _revision(cli))
    problem = schema_problem(revision, schema=cli.settings.db_schema)
    if problem is not None:
        raise CommandFailed(problem)
    # The web stack is loaded here, to serve, and not with the commands: the process of
    # `mailworker run` does not carry Starlette, uvicorn and Jinja2 (docs/console.md).
    import uvicorn  # noqa: PLC0415

    from worker.console.app import create_app  # noqa: PLC0415

    app = create_app(cli.settings, url)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"mailworker console on http://{shown}:{port}/ (Ctrl-C stops it)")
    log.info("console_started", host=host, port=port)
    # uvicorn believes X-Forwarded-For only from the reverse proxies the settings name.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=cli.settings.console_trusted_proxies,
    )


async def _revision(cli: CliContext) -> str | None:
    async with cli.repository() as repository:
        return await repository.schema_revision()


@console.group("users", short_help="Add, list and remove console users.")
def users() -> None:
    """Who may sign in to the console: admin (may change things) or viewer (may look)."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem is not None:
        raise UsageProblem(problem)
    return password


@users.command("add", short_help="Add a console user (password asked, kept hashed).")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="admin or viewer.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of asking for it.",
)
@pass_cli
def users_add(cli: CliContext, name: str, role: str, password_stdin: bool) -> None:
    """Add a console user NAME; the password is asked for (hidden) and stored hashed."""
    name = name.strip()
    if not name or not name.isprintable():
        raise UsageProblem("the user name must be printable and not empty")
    password_hash = hash_password(_read_password(password_stdin))

    async def add() -> bool:
        async with cli.repository() as repository:
            return await repository.add_console_user(
                name=name, role=role, password_hash=password_hash
            )

    if not run_async(add):
        raise UsageProblem(f"a console user {name!r} exists already")
    log.info("console_user_added", user=name, role=role, by=getpass.getuser())
    click.echo(f"console user {printable(name)!r} added ({role})")


@users.command("list")
@pass_cli
def users_list(cli: CliContext) -> None:
    """List the console users, their roles and last sign-in."""

    async def found() -> list[ConsoleUser]:
        async with cli.repository() as repository:
            return await repository.console_users()

    rows = [
        (
            printable(user.name),
            user.role,
            moment_text(user.created_at),
            moment_text(user.last_login_at),
        )
        for user in run_async(found)
    ]
    if not rows:
        click.echo(
            "no console users yet; add one with `mailworker console users add NAME --role admin`"
        )
        return
    click.echo(table(("USER", "ROLE", "CREATED", "LAST-LOGIN"), rows))


@users.command("remove", short_help="Remove a console user; their session ends.")
@click.argument("name")
@pass_cli
def users_remove(cli: CliContext, name: str) -> None:
    """Remove console user NAME; a session of theirs ends at its next request."""

    async def remove() -> bool:
        async with cli.repository() as repository:
            return await repository.remove_console_user(name)

    if not run_async(remove):
        raise UsageProblem(f"no console user is called {name!r}")
    log.info("console_user_removed", user=name, by=getpass.getuser())
    click.echo(f"console user {printable(name)!r} removed")
