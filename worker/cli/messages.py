"""``mailworker messages ...``: find, inspect, retry and cancel outbox messages.

``retry`` and ``cancel`` change only the rows whose status allows it, in one statement that
locks them first, so a worker claiming a row at the same moment is seen: a row being sent is
never cancelled, and a message is never requeued while a worker holds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import structlog

from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.exits import UsageProblem
from worker.cli.output import echo_json, moment_text, printable, table
from worker.listener import notify_channel
from worker.models import MESSAGE_KINDS
from worker.operations import (
    MessageChange,
    MessageDetails,
    MessageFilter,
    cancel_refusal,
    change_outcomes,
    parse_since,
    parse_statuses,
    retry_refusal,
)

__all__ = ["messages"]

log = structlog.get_logger("worker.cli")

LIST_HEADERS = ("ID", "STATUS", "PROFILE", "KIND", "CREATED", "ATTEMPTS", "TO", "SUBJECT", "REASON")
# Fields `show` prints at the end, each as a block of its own.
_BODIES = ("body_text", "body_html")
# Fields that hold server replies, which may span lines; `show` keeps their line breaks.
_MULTI_LINE = frozenset({"status_reason", "last_error", "smtp_response"})


@click.group("messages")
def messages() -> None:
    """Find, inspect, retry and cancel outbox messages."""


# --- arguments -------------------------------------------------------------------------------


def _status_list(_ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    try:
        return parse_statuses(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _since(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value, now=datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


# --- list ------------------------------------------------------------------------------------


def _short(text: str | None, width: int) -> str:
    one_line = printable(" ".join((text or "").split()))
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def _recipients_cell(row: Mapping[str, Any]) -> str:
    everyone = [*row["to_addrs"], *row["cc_addrs"], *row["bcc_addrs"]]
    if not everyone:
        return "-"
    more = f" (+{len(everyone) - 1})" if len(everyone) > 1 else ""
    return f"{printable(everyone[0])}{more}"


def _list_row(row: Mapping[str, Any]) -> tuple[str, ...]:
    # Producers write these columns (and servers the reasons): never printed raw.
    return (
        str(row["id"]),
        printable(row["status"]),
        printable(row["profile"] or "-"),
        printable(row["kind"]),
        moment_text(row["created_at"]),
        str(row["attempts"]),
        _recipients_cell(row),
        _short(row["subject"], 40),
        _short(row["status_reason"], 60),
    )


async def _search(cli: CliContext, selection: MessageFilter) -> list[dict[str, Any]]:
    async with cli.repository() as repository:
        return await repository.search_messages(selection)


@messages.command("list")
@click.option(
    "--status",
    "statuses",
    metavar="S[,S...]",
    callback=_status_list,
    help="Only these statuses: pending, sending, sent, failed, cancelled.",
)
@click.option("--profile", metavar="NAME", help="Only messages of this profile.")
@click.option("--kind", type=click.Choice(MESSAGE_KINDS), help="Only messages of this kind.")
@click.option(
    "--since",
    metavar="AGE|TIME",
    callback=_since,
    help="Only messages enqueued since then: an age like 1h or 2d, or an ISO 8601 time.",
)
@click.option("--recipient", metavar="ADDR", help="Only messages to, cc or bcc this address.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="At most this many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_cli
def list_messages(
    cli: CliContext,
    *,
    statuses: tuple[str, ...],
    profile: str | None,
    kind: str | None,
    since: datetime | None,
    recipient: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List outbox messages, newest first; the filters combine."""
    selection = MessageFilter(
        statuses=statuses,
        profile=profile,
        kind=kind,
        since=since,
        recipient=recipient,
        limit=limit,
    )
    found = run_async(lambda: _search(cli, selection))
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no messages match")
        return
    click.echo(table(LIST_HEADERS, [_list_row(row) for row in found]))
    if len(found) == limit:
        click.echo(f"(the newest {limit}; --limit shows more)", err=True)


# --- show ------------------------------------------------------------------------------------


async def _details(cli: CliContext, message_id: int) -> MessageDetails:
    async with cli.repository() as repository:
        details = await repository.message_details(message_id)
    if details is None:
        raise UsageProblem(f"no message has the id {message_id}")
    return details


def _field_text(key: str, value: Any) -> str:
    """A field as text, control characters escaped; a multi-line one keeps its line breaks."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return moment_text(value)
    if isinstance(value, list | tuple):
        return printable(", ".join(str(item) for item in value))
    if isinstance(value, dict):
        return printable(json.dumps(value, ensure_ascii=False)) if value else ""
    return printable(str(value), lines=key in _MULTI_LINE)


def _hanging(first: str, text: str) -> str:
    """``first`` + ``text``, further lines of ``text`` indented to line up under its first."""
    return first + text.replace("\n", "\n" + " " * len(first))


def _attempt_lines(attempt: Mapping[str, Any]) -> list[str]:
    reply = " ".join(str(part) for part in (attempt["smtp_code"], attempt["smtp_text"]) if part)
    head = [
        f"#{attempt['attempt_no']}",
        printable(attempt["outcome"] or "unfinished"),
        f"{moment_text(attempt['started_at'])} .. {moment_text(attempt['finished_at'])}",
        f"worker {printable(attempt['worker_id'] or '-')}",
        f"profile {printable(attempt['profile'] or '-')}",
    ]
    if attempt["tls_version"]:
        head.append(printable(attempt["tls_version"]))
    lines = ["  " + "  ".join(head)]
    # Server replies may span lines (multi-line SMTP replies): kept as lines, never raw.
    if reply:
        lines.append(_hanging("      reply: ", printable(reply, lines=True)))
    if attempt["error"] and attempt["error"] != attempt["smtp_text"]:
        lines.append(_hanging("      error: ", printable(attempt["error"], lines=True)))
    for address, result in (attempt["recipients"] or {}).items():
        answer = printable(f"{result.get('code', '')} {result.get('text', '')}", lines=True)
        lines.append(_hanging(f"      {printable(address)}: ", answer).rstrip())
    return lines


def _echo_details(details: MessageDetails) -> None:
    fields = {key: value for key, value in details.message.items() if key not in _BODIES}
    width = max(len(key) for key in fields)
    for key, value in fields.items():
        click.echo(_hanging(f"{key:<{width}}  ", _field_text(key, value)).rstrip())
    click.echo(f"\nattachments ({len(details.attachments)}):")
    for item in details.attachments:
        name, content_type = printable(item["filename"]), printable(item["content_type"])
        click.echo(f"  {name}  {content_type}  {item['size']} bytes")
    click.echo(f"\nattempts ({len(details.attempts)}):")
    for attempt in details.attempts:
        for line in _attempt_lines(attempt):
            click.echo(line)
    for key in _BODIES:
        body = details.message.get(key)
        if body:
            click.echo(f"\n{key}:")
            for line in printable(str(body), lines=True).splitlines():
                click.echo(f"  {line}".rstrip())


@messages.command("show", short_help="Print a message with its attachments and attempts.")
@click.argument("message_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_cli
def show_message(cli: CliContext, message_id: int, as_json: bool) -> None:
    """Print everything about message ID: its fields, attachments and every attempt.

    Each attempt shows its outcome, times, worker, the server's reply and the result for each
    recipient. Attachments are listed by name, type and size, not printed.
    """
    details = run_async(lambda: _details(cli, message_id))
    if as_json:
        echo_json(
            {
                "message": dict(details.message),
                "attachments": list(details.attachments),
                "attempts": list(details.attempts),
            }
        )
        return
    _echo_details(details)


# --- retry, cancel ---------------------------------------------------------------------------


def _unique(ids: Sequence[int]) -> list[int]:
    return list(dict.fromkeys(ids))


def _report(
    ids: Sequence[int],
    changes: Sequence[MessageChange],
    *,
    done: str,
    refusal: Callable[[MessageChange], str | None],
    verb: str,
) -> None:
    """One line per requested message; exit 1 if any of them was not changed."""
    refused = 0
    for outcome in change_outcomes(ids, changes, refusal):
        if outcome.result == "changed":
            click.echo(f"message {outcome.id}: {done}")
        elif outcome.result == "already":  # nothing to do, and nothing wrong
            click.echo(f"message {outcome.id}: {outcome.status} already")
        else:
            refused += 1
            click.echo(f"message {outcome.id}: {outcome.refusal}", err=True)
    if refused:
        raise click.ClickException(f"{refused} of {len(ids)} message(s) were not {verb}")


async def _requeue(
    cli: CliContext, ids: Sequence[int], *, all_failed: bool, profile: str | None
) -> list[MessageChange]:
    async with cli.repository() as repository:
        if all_failed:
            changes = await repository.requeue_failed(profile)
        else:
            changes = await repository.requeue_messages(ids)
        if any(change.changed for change in changes):
            await repository.wake_workers(notify_channel(cli.settings.db_schema))
        return changes


@messages.command("retry")
@click.argument("ids", metavar="[ID]...", nargs=-1, type=click.IntRange(min=1))
@click.option("--failed", "all_failed", is_flag=True, help="Every failed message instead of IDs.")
@click.option("--profile", metavar="NAME", help="With --failed: only this profile's messages.")
@pass_cli
def retry_messages(
    cli: CliContext, ids: tuple[int, ...], all_failed: bool, profile: str | None
) -> None:
    """Send failed or cancelled messages again, now.

    Each message becomes pending with its attempt count reset, so the retry policy gives it
    a full set of attempts; its earlier attempts stay in its history. A message past its
    expires_at is left alone: it would fail again at once. Exits 1 if a given ID could not be
    retried.
    """
    if all_failed == bool(ids):
        raise click.UsageError("give message IDs or --failed, not both and not neither")
    if profile is not None and not all_failed:
        raise click.UsageError("--profile goes with --failed")
    wanted = _unique(ids)
    changes = run_async(lambda: _requeue(cli, wanted, all_failed=all_failed, profile=profile))
    retried = [change.id for change in changes if change.changed]
    log.info("messages_requeued", count=len(retried), ids=retried[:100], profile=profile)
    if not all_failed:
        _report(wanted, changes, done="queued again", refusal=retry_refusal, verb="retried")
        return
    of_profile = f" of profile {profile!r}" if profile else ""
    click.echo(f"queued again {len(retried)} failed message(s){of_profile}")
    expired = len(changes) - len(retried)
    if expired:
        click.echo(f"left {expired} expired message(s) failed: they are past expires_at")


async def _cancel(cli: CliContext, ids: Sequence[int]) -> list[MessageChange]:
    async with cli.repository() as repository:
        return await repository.cancel_pending(ids)


@messages.command("cancel")
@click.argument("ids", metavar="ID...", nargs=-1, required=True, type=click.IntRange(min=1))
@pass_cli
def cancel_messages(cli: CliContext, ids: tuple[int, ...]) -> None:
    """Withdraw pending messages, so they are never sent.

    A message that a worker is sending right now cannot be called back and is not cancelled;
    nor are sent or failed ones. Exits 1 if a given ID could not be cancelled.
    """
    wanted = _unique(ids)
    changes = run_async(lambda: _cancel(cli, wanted))
    cancelled = [change.id for change in changes if change.changed]
    log.info("messages_cancelled", count=len(cancelled), ids=cancelled)
    _report(wanted, changes, done="cancelled", refusal=cancel_refusal, verb="cancelled")
