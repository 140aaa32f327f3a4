"""``mailworker send-test``: a test e-mail through the outbox, and the truth about what happened.

Like a mail program's "send test e-mail" button, but honest: the message goes through the same
outbox as every other (kind ``test``, priority 100; same caps, same pauses), a running worker
sends it, and the command waits for the row to say what became of it — delivered with the
server's reply, not delivered with the reason and the provider's advice, or no answer in time
(told apart: nobody picked it up, or a worker is still retrying).

A message still queued when the command gives up is withdrawn (status ``cancelled``), so a
stale test e-mail never turns up hours later; ``--keep-queued`` leaves it for a worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.classify import LIMIT_REACHED
from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.exits import CommandFailed, ExitCode, UsageProblem, command_errors
from worker.cli.output import json_text
from worker.errors import InvalidMessage
from worker.message_status import Judgement, MessageStatus, Verdict, judge
from worker.moments import utc_iso
from worker.outbox import Attachment, OutboxMessage
from worker.profile_check import encryption_words
from worker.profiles import Profile
from worker.repository import Repository
from worker.test_message import (
    DEFAULT_SUBJECT,
    TEST_PRIORITY,
    SendTestRequest,
    advice,
    profile_to_test,
    queue_test_message,
)

__all__ = ["DEFAULT_SUBJECT", "TEST_PRIORITY", "send_test"]

log = structlog.get_logger("worker.cli")

POLL_SECONDS = 0.2
_FINAL_STATUSES = frozenset({"sent", "failed", "cancelled"})
_EXIT_CODES = {
    Verdict.DELIVERED: ExitCode.OK,
    Verdict.NOT_DELIVERED: ExitCode.NOT_OK,
    Verdict.STILL_WAITING: ExitCode.STILL_WAITING,
}


class Fate(enum.StrEnum):
    """What became of the test message when the command ended."""

    FINAL = "final"  # sent, failed or cancelled: no worker touches it again
    WITHDRAWN = "withdrawn"  # this command cancelled it: it will not be sent
    KEPT = "kept"  # --keep-queued: a worker sends it later
    SENDING = "sending"  # a worker holds it right now: it may still arrive


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Request:
    message: SendTestRequest
    timeout: float
    keep_queued: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Answer:
    """Everything the command reports."""

    message_id: int
    profile: Profile
    to: str
    status: MessageStatus
    judgement: Judgement
    fate: Fate
    hint: str | None
    schema: str

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT_CODES[self.judgement.verdict]


@click.command("send-test", short_help="Send a test e-mail and say what became of it.")
@click.option("--profile", metavar="NAME", help="Profile to test. Default: the default profile.")
@click.option(
    "--to",
    required=True,
    metavar="ADDR",
    help="Recipient of the test message: jan@example.pl, 'Jan Kowalski <jan@example.pl>'"
    " or anna@zażółć.pl.",
)
@click.option(
    "--subject", default=DEFAULT_SUBJECT, show_default=True, metavar="TEXT", help="Subject line."
)
@click.option(
    "--body", metavar="TEXT", help="Plain-text body. Default: which profile, server, when."
)
@click.option(
    "--attach",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File to attach; repeat for more.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the answer.",
)
@click.option("--no-wait", is_flag=True, help="Only queue the message and print its id.")
@click.option(
    "--keep-queued",
    is_flag=True,
    help="If it is not sent when the command ends, leave it queued for a worker to send later."
    " Default: withdraw it (status cancelled).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@pass_cli
def send_test(
    cli: CliContext,
    *,
    profile: str | None,
    to: str,
    subject: str,
    body: str | None,
    attach: tuple[Path, ...],
    timeout: float,
    no_wait: bool,
    keep_queued: bool,
    as_json: bool,
) -> None:
    """Send a test e-mail through the outbox and say truthfully what became of it.

    A worker (`mailworker run`, here or elsewhere) sends it like any other message. Prints
    DELIVERED with the server, TLS version and reply, or NOT DELIVERED with the reason and
    a hint. Exit codes: 0 delivered; 1 not delivered (refused, failed, or the profile does
    not work now); 2 a usage mistake (e.g. no such profile); 3 no answer within --timeout;
    4 the command could not run (database, settings); 130 interrupted (Ctrl-C).
    """
    message = SendTestRequest(
        profile=profile,
        to=to,
        subject=subject,
        body=body,
        attachments=tuple(_read_attachment(path) for path in attach),
    )
    request = _Request(
        message=message,
        timeout=timeout,
        keep_queued=keep_queued,
    )
    with command_errors():
        max_bytes = cli.settings.max_message_bytes
        _exit_if_invalid(message.outbox_message(body or ""), max_bytes)
        if no_wait:
            message_id, queued_for = run_async(lambda: _queue_only(cli, request, max_bytes))
            queued = {"outbox_id": message_id, "profile": queued_for.name, "result": "queued"}
            click.echo(json.dumps(queued) if as_json else message_id)
            return
        try:
            answer = run_async(lambda: _send_and_wait(cli, request, max_bytes))
        except KeyboardInterrupt:
            raise click.exceptions.Exit(ExitCode.INTERRUPTED) from None
    _print(answer, as_json=as_json)
    click.get_current_context().exit(answer.exit_code)


# --- the message -----------------------------------------------------------------------------


def _read_attachment(path: Path) -> Attachment:
    try:
        return Attachment.from_path(path)
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror}") from None


def _exit_if_invalid(message: OutboxMessage, max_bytes: int) -> None:
    # Checked before connecting, so a mistake never waits on the database.
    try:
        message.check(max_bytes=max_bytes)
    except InvalidMessage as exc:
        problems = "\n".join(f"  - {problem}" for problem in exc.problems)
        raise UsageProblem(f"the test message was not queued:\n{problems}") from None


# --- queue, wait, settle ---------------------------------------------------------------------


async def _queue_only(cli: CliContext, request: _Request, max_bytes: int) -> tuple[int, Profile]:
    engine = cli.engine()
    try:
        return await _enqueue(engine, request, max_bytes)
    finally:
        await engine.dispose()


async def _send_and_wait(cli: CliContext, request: _Request, max_bytes: int) -> _Answer:
    engine = cli.engine()
    try:
        message_id, profile = await _enqueue(engine, request, max_bytes)
        click.echo(
            f"queued test message {message_id} through profile {profile.name!r};"
            f" waiting up to {request.timeout:g} s for a worker to send it",
            err=True,
        )
        try:
            status, judgement = await _wait_for_answer(engine, message_id, request.timeout)
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels the command
            await _interrupted(engine, message_id, keep_queued=request.keep_queued)
            raise
        status, judgement, fate = await _settle(engine, status, judgement, request)
    finally:
        await engine.dispose()
    log.info(
        "test_message_answered",
        message_id=message_id,
        profile=profile.name,
        verdict=str(judgement.verdict),
        reason=judgement.reason,
        fate=str(fate),
    )
    return _Answer(
        message_id=message_id,
        profile=profile,
        to=request.message.to,
        status=status,
        judgement=judgement,
        fate=fate,
        hint=advice(judgement, profile),
        schema=cli.settings.db_schema,
    )


async def _enqueue(engine: AsyncEngine, request: _Request, max_bytes: int) -> tuple[int, Profile]:
    name = request.message.profile
    async with engine.begin() as connection:
        repository = Repository(connection)
        profile = await profile_to_test(repository, name)
        if profile is None and name is None:
            raise UsageProblem("no profile is the default one; name the profile with --profile")
        if profile is None:
            raise UsageProblem(
                f"no profile is named {name!r}; `mailworker profiles list` shows all"
            )
        message_id = await queue_test_message(
            repository, profile, request.message, max_bytes=max_bytes
        )
    log.info(
        "test_message_queued", outbox_id=message_id, profile=profile.name, priority=TEST_PRIORITY
    )
    return message_id, profile


async def _wait_for_answer(
    engine: AsyncEngine, message_id: int, wait_seconds: float
) -> tuple[MessageStatus, Judgement]:
    """Read the row every :data:`POLL_SECONDS` until it gives an answer or the time is up."""
    deadline = time.monotonic() + wait_seconds
    told_pickup = False
    while True:
        status = await _read_status(engine, message_id)
        remaining = deadline - time.monotonic()
        judgement = judge(status, remaining=remaining, timeout=wait_seconds)
        if judgement is not None:
            return status, judgement
        if status.status == "sending" and not told_pickup:
            told_pickup = True
            click.echo(f"worker {status.claimed_by} picked it up; sending", err=True)
        await asyncio.sleep(min(POLL_SECONDS, max(remaining, 0.0)))


async def _read_status(engine: AsyncEngine, message_id: int) -> MessageStatus:
    async with engine.connect() as connection:
        status = await Repository(connection).message_status(message_id)
    if status is None:
        raise CommandFailed(f"test message {message_id} is no longer in the outbox")
    return status


async def _settle(
    engine: AsyncEngine, status: MessageStatus, judgement: Judgement, request: _Request
) -> tuple[MessageStatus, Judgement, Fate]:
    """Withdraw the message if it is still queued (unless --keep-queued); what became of it."""
    if status.status in _FINAL_STATUSES:
        return status, judgement, Fate.FINAL
    if status.status == "sending":
        return status, judgement, Fate.SENDING
    if request.keep_queued:
        return status, judgement, Fate.KEPT
    reason = f"cancelled: mailworker send-test withdrew the test message ({judgement.reason})"
    async with engine.begin() as connection:
        withdrawn = await Repository(connection).cancel_pending_message(status.id, reason=reason)
    if withdrawn:
        log.info("test_message_withdrawn", outbox_id=status.id, reason=judgement.reason)
        return await _read_status(engine, status.id), judgement, Fate.WITHDRAWN
    # A worker took it in the meantime: one last look says what it is doing.
    status = await _read_status(engine, status.id)
    judgement = judge(status, remaining=0.0, timeout=request.timeout) or judgement
    fate = Fate.FINAL if status.status in _FINAL_STATUSES else Fate.SENDING
    return status, judgement, fate


async def _interrupted(engine: AsyncEngine, message_id: int, *, keep_queued: bool) -> None:
    """Interrupted while waiting: withdraw the message as on a timeout; say what became of it."""
    withdrawn = False
    if not keep_queued:
        reason = "cancelled: mailworker send-test was interrupted before the message was sent"
        async with engine.begin() as connection:
            repository = Repository(connection)
            withdrawn = await repository.cancel_pending_message(message_id, reason=reason)
    if withdrawn:
        log.info("test_message_withdrawn", message_id=message_id, reason="interrupted")
        click.echo(f"interrupted: test message {message_id} was withdrawn", err=True)
    else:
        click.echo(
            f"interrupted: test message {message_id} was not withdrawn"
            " (kept, or a worker has it): a worker may still send it",
            err=True,
        )


# --- output ----------------------------------------------------------------------------------


def _print(answer: _Answer, *, as_json: bool) -> None:
    if as_json:
        click.echo(json_text(_as_dict(answer), indent=2))
    else:
        click.echo("\n".join(_lines(answer)))


def _lines(answer: _Answer) -> list[str]:
    judgement, status, profile = answer.judgement, answer.status, answer.profile
    if judgement.verdict is Verdict.DELIVERED:
        head = f"DELIVERED: {_server(profile)} accepted test message {answer.message_id}"
    else:
        head = f"NOT DELIVERED: test message {answer.message_id}"
        if judgement.verdict is Verdict.STILL_WAITING:
            head += ", no answer in time"
    rows = [
        ("profile", f"{profile.name} ({profile.from_address} → {answer.to})"),
        ("server", _server_words(profile, _tls_version(status))),
    ]
    rows += _verdict_rows(answer)
    note = _fate_words(answer)
    if note:
        rows.append(("queue", note))
    width = max(len(label) for label, _ in rows) + 1
    return [head, *(f"  {label + ':':<{width}} {value}" for label, value in rows)]


def _verdict_rows(answer: _Answer) -> list[tuple[str, str]]:
    judgement, status = answer.judgement, answer.status
    if judgement.verdict is Verdict.DELIVERED:
        latest = status.latest_attempt
        worker = f" by worker {latest.worker_id}" if latest and latest.worker_id else ""
        sent = f"{utc_iso(status.sent_at)}{worker}, attempt {status.attempts}"
        return [("reply", judgement.reason), ("sent", sent)]
    rows = [("reason", judgement.reason)]
    if answer.hint:
        rows.append(("hint", answer.hint))
    paused_until = answer.status.profile_paused_until
    if judgement.account_problem and paused_until is not None:
        name = answer.profile.name
        rows.append(("paused", f"profile {name} is paused until {utc_iso(paused_until)}"))
        rows.append(("next", _next_step(name, answer.status.profile_pause_reason)))
    return rows


def _next_step(name: str, pause_reason: str | None) -> str:
    if pause_reason is not None and pause_reason.startswith(LIMIT_REACHED):
        # Editing the profile would end the pause early and meet the same refusal.
        return "wait: the profile resumes by itself when the provider's window has room again"
    return (
        f"fix the profile (`mailworker profiles edit {name} ...`), which ends its pause"
        f" at once; `mailworker profiles check {name}` tries the login without sending"
    )


def _server(profile: Profile) -> str:
    return f"{profile.host}:{profile.port}"


def _server_words(profile: Profile, tls_version: str | None) -> str:
    tls = f", {tls_version}" if tls_version else ""
    return f"{_server(profile)}{tls} ({encryption_words(profile)})"


def _tls_version(status: MessageStatus) -> str | None:
    latest = status.latest_attempt
    return latest.tls_version if latest is not None else None


def _fate_words(answer: _Answer) -> str | None:
    match answer.fate:
        case Fate.WITHDRAWN:
            return "withdrawn (status cancelled): no worker will send it later"
        case Fate.KEPT:
            # Shown to the person, never executed.
            withdraw = (
                f"UPDATE {answer.schema}.outbox SET status = 'cancelled'"  # noqa: S608
                f" WHERE id = {answer.message_id} AND status = 'pending'"
            )
            return (
                "still queued (--keep-queued): a worker will send it later,"
                f" e.g. once the profile works; to withdraw it: {withdraw}"
            )
        case Fate.SENDING:
            return "a worker is sending it right now: it may still arrive"
    return None


def _as_dict(answer: _Answer) -> dict[str, Any]:
    status, judgement, profile = answer.status, answer.judgement, answer.profile
    return {
        "outbox_id": answer.message_id,
        "result": str(judgement.verdict),
        "exit_code": int(answer.exit_code),
        "profile": profile.name,
        "from": profile.from_address,
        "to": answer.to,
        "server": _server(profile),
        "encryption": encryption_words(profile),
        "tls_version": _tls_version(status),
        "smtp_response": status.smtp_response,
        "reason": judgement.reason,
        "hint": answer.hint,
        "account_problem": judgement.account_problem,
        **_row_facts(status),
        "queue": str(answer.fate),
    }


def _row_facts(status: MessageStatus) -> Mapping[str, Any]:
    return {
        "status": status.status,
        "status_reason": status.status_reason,
        "attempts": status.attempts,
        "picked_up": status.picked_up,
        "next_attempt_at": None if status.status != "pending" else utc_iso(status.next_attempt_at),
        "sent_at": utc_iso(status.sent_at) or None,
    }
