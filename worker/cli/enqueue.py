"""``mailworker enqueue``: put one message into the outbox from a shell script."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TextIO

import click
import structlog

from worker.cli.context import CliContext, pass_cli, run_async
from worker.errors import InvalidMessage
from worker.outbox import Attachment, Enqueued, OutboxMessage, enqueue_message

__all__ = ["enqueue"]

log = structlog.get_logger("worker.cli")


def _parse_moment(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | None:
    """An ISO 8601 time; one without an offset is taken as this machine's local time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        message = f"{value!r} is not an ISO 8601 time like 2026-12-01T08:00+01:00"
        raise click.BadParameter(message, param=param) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


@click.command("enqueue")
@click.option(
    "--profile", metavar="NAME", help="Account name of the profile. Default: the default profile."
)
@click.option(
    "--to",
    "to",
    multiple=True,
    metavar="ADDR",
    help="Recipient, as mail programs take it: jan@example.pl, 'Jan Kowalski <jan@example.pl>'"
    " or anna@zażółć.pl; repeat for more.",
)
@click.option("--cc", multiple=True, metavar="ADDR", help="Copy recipient; repeat for more.")
@click.option("--bcc", multiple=True, metavar="ADDR", help="Blind copy recipient; repeat.")
@click.option("--subject", required=True, metavar="TEXT", help="Subject line.")
@click.option("--body", help="Plain-text body.")
@click.option(
    "--body-file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE",
    help="File with the plain-text body (UTF-8); - reads standard input.",
)
@click.option(
    "--html", type=click.File("r", encoding="utf-8"), metavar="FILE", help="An HTML body as well."
)
@click.option(
    "--attach",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File to attach; repeat for more. The content type is guessed from the name.",
)
@click.option(
    "--priority", type=int, default=0, show_default=True, metavar="N", help="Higher goes first."
)
@click.option(
    "--not-before", metavar="ISO-TIME", callback=_parse_moment, help="Do not send before this time."
)
@click.option(
    "--expires-at",
    metavar="ISO-TIME",
    callback=_parse_moment,
    help="Give up (status failed) after this time.",
)
@click.option(
    "--idempotency-key", metavar="KEY", help="Enqueue at most once per key; a repeat adds nothing."
)
@pass_cli
def enqueue(
    cli: CliContext,
    *,
    profile: str | None,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    subject: str,
    body: str | None,
    body_file: TextIO | None,
    html: TextIO | None,
    attach: tuple[Path, ...],
    priority: int,
    not_before: datetime | None,
    expires_at: datetime | None,
    idempotency_key: str | None,
) -> None:
    """Put a message into the outbox; print its id.

    A repeated --idempotency-key adds nothing: the earlier message's id is printed, and a
    note says so on standard error.
    """
    if (body is None) == (body_file is None):
        raise click.UsageError("give the body with exactly one of --body and --body-file")
    message = OutboxMessage(
        profile=profile,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        body_text=body_file.read() if body_file is not None else body or "",
        body_html=None if html is None else html.read(),
        attachments=tuple(Attachment.from_path(path) for path in attach),
        priority=priority,
        not_before=not_before,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
    )
    max_bytes = cli.settings.max_message_bytes
    _exit_if_invalid(message, max_bytes)
    result = run_async(lambda: _store(cli, message, max_bytes))
    log.info("message_enqueued", outbox_id=result.id, created=result.created, profile=profile)
    click.echo(result.id)
    if not result.created:
        click.echo(
            f"message {result.id} was already queued with idempotency key"
            f" {idempotency_key!r}; nothing new was added",
            err=True,
        )


def _exit_if_invalid(message: OutboxMessage, max_bytes: int) -> None:
    # Checked before connecting, so a script's mistake never waits on the database.
    try:
        message.check(max_bytes=max_bytes)
    except InvalidMessage as exc:
        problems = "\n".join(f"  - {problem}" for problem in exc.problems)
        raise click.ClickException(f"the message was not queued:\n{problems}") from None


async def _store(cli: CliContext, message: OutboxMessage, max_bytes: int) -> Enqueued:
    async with cli.repository() as repository:
        return await enqueue_message(repository, message, max_bytes=max_bytes)
