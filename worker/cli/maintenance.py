"""``mailworker purge`` and ``mailworker secrets rotate``: keeping the outbox and the keys tidy.

Purge deletes finished rows in batches, each its own short transaction that skips rows
someone else holds, so the workers never wait for it. Rotate re-encrypts every stored
password and OAuth secret (an app's secret, certificate or key, and the tokens) under the
newest key in one transaction: all of them move, or none.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import click
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.output import moment_text, progress
from worker.crypto import PasswordCipher, load_cipher
from worker.errors import SecretKeyError
from worker.operations import FINISHED_STATUSES, parse_age
from worker.repository import Repository

__all__ = ["purge", "secrets"]

log = structlog.get_logger("worker.cli")


# --- purge -----------------------------------------------------------------------------------


def _age(_ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _finished_statuses(_ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    statuses = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    wrong = [status for status in statuses if status not in FINISHED_STATUSES]
    if wrong or not statuses:
        raise click.BadParameter(
            f"{value!r}: only finished messages are purged: {', '.join(FINISHED_STATUSES)}",
            param=param,
        )
    return statuses


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Purged:
    cutoff: datetime
    found: int  # finished rows older than the cutoff when the purge began
    deleted: int
    batches: int


async def _purge(
    cli: CliContext, *, age: timedelta, statuses: tuple[str, ...], batch_size: int, dry_run: bool
) -> _Purged:
    engine = cli.engine()
    try:
        async with engine.begin() as connection:
            repository = Repository(connection)
            cutoff = await repository.database_time() - age
            found = await repository.count_purgeable(statuses, cutoff)
        if dry_run or not found:
            return _Purged(cutoff=cutoff, found=found, deleted=0, batches=0)
        deleted, batches = await _delete_in_batches(
            engine, statuses=statuses, cutoff=cutoff, size=batch_size, expected=found
        )
        return _Purged(cutoff=cutoff, found=found, deleted=deleted, batches=batches)
    finally:
        await engine.dispose()


async def _delete_in_batches(
    engine: AsyncEngine,
    *,
    statuses: tuple[str, ...],
    cutoff: datetime,
    size: int,
    expected: int,
) -> tuple[int, int]:
    """Delete batch after batch, each in its own transaction, until one comes back short."""
    deleted = batches = 0
    after_id = 0
    with progress(expected, "deleting finished messages") as advance:
        while True:
            async with engine.begin() as connection:
                ids = await Repository(connection).purge_batch(
                    statuses, cutoff, after_id=after_id, size=size
                )
            if ids:
                batches += 1
                deleted += len(ids)
                after_id = ids[-1]
                advance(len(ids))
            if len(ids) < size:
                return deleted, batches


@click.command("purge", short_help="Delete old finished messages.")
@click.option(
    "--older-than",
    "age",
    required=True,
    metavar="AGE",
    callback=_age,
    help=(
        "Delete messages that finished longer ago than this: 30d, 12h, 1d12h, 6mo (30-day"
        " months); 90m is minutes."
    ),
)
@click.option(
    "--status",
    "statuses",
    default=",".join(FINISHED_STATUSES),
    show_default=True,
    metavar="S[,S...]",
    callback=_finished_statuses,
    help="Which finished messages; pending and sending ones are never deleted.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Rows deleted per transaction.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@pass_cli
def purge(
    cli: CliContext, age: timedelta, statuses: tuple[str, ...], batch_size: int, dry_run: bool
) -> None:
    """Delete old finished messages with their attachments and attempt records.

    A message counts as finished when it was sent, its last attempt ended, it expired or it was
    enqueued, whichever is latest. Batches are short transactions that skip rows held by
    others, so workers and producers never wait; a skipped row goes with the next purge.
    """
    result = run_async(
        lambda: _purge(cli, age=age, statuses=statuses, batch_size=batch_size, dry_run=dry_run)
    )
    what = f"{'/'.join(statuses)} message(s) finished before {moment_text(result.cutoff)}"
    if dry_run:
        click.echo(f"would delete {result.found} {what}")
        return
    log.info(
        "outbox_purged",
        deleted=result.deleted,
        batches=result.batches,
        statuses=list(statuses),
        cutoff=moment_text(result.cutoff),
    )
    click.echo(f"deleted {result.deleted} {what}, in {result.batches} batch(es)")


# --- secrets ---------------------------------------------------------------------------------


@click.group("secrets")
def secrets() -> None:
    """Manage the keys that encrypt stored passwords."""


@dataclasses.dataclass(frozen=True)
class _Rotated:
    moved: list[str]
    unreadable: list[str]
    oauth_moved: int = 0
    oauth_unreadable: tuple[str, ...] = ()


async def _rotate(cli: CliContext, cipher: PasswordCipher) -> _Rotated:
    async with cli.repository() as repository:
        tokens = await repository.lock_password_tokens()
        fresh: dict[str, bytes] = {}
        unreadable: list[str] = []
        with progress(len(tokens), "re-encrypting passwords") as advance:
            for name, token in tokens:
                try:
                    fresh[name] = cipher.reencrypt(token, profile=name)
                except SecretKeyError:
                    unreadable.append(name)
                advance(1)
        await repository.replace_password_tokens(fresh)
        oauth = await repository.lock_oauth_secrets()
        oauth_fresh: dict[tuple[str, str], bytes] = {}
        oauth_unreadable: dict[str, None] = {}
        for name, what, token in oauth:
            try:
                oauth_fresh[(name, what)] = cipher.reencrypt(token, profile=name)
            except SecretKeyError:
                oauth_unreadable[name] = None
        await repository.replace_oauth_secrets(oauth_fresh)
    return _Rotated(
        moved=list(fresh),
        unreadable=unreadable,
        oauth_moved=len(oauth_fresh),
        oauth_unreadable=tuple(oauth_unreadable),
    )


@secrets.command("rotate")
@pass_cli
def rotate(cli: CliContext) -> None:
    """Re-encrypt every stored password under the newest key.

    Put the new key first: MAILWORKER_SECRET_KEY="new,old", for every worker too, then run
    this; afterwards the old key can go. All passwords move in one transaction. A password no
    configured key decrypts is left as it is and its profile named (exit 1): give that profile
    its password again.
    """
    cipher = load_cipher(cli.settings)
    result = run_async(lambda: _rotate(cli, cipher))
    log.info(
        "secrets_rotated",
        reencrypted=len(result.moved),
        unreadable=result.unreadable,
        keys=cipher.key_count,
    )
    click.echo(
        f"re-encrypted {len(result.moved)} stored password(s) under the newest key"
        f" (1 of {cipher.key_count} configured)"
    )
    if result.oauth_moved or result.oauth_unreadable:
        click.echo(f"re-encrypted {result.oauth_moved} stored OAuth secret(s) and token(s)")
    for name in result.oauth_unreadable:
        click.echo(
            f"profile {name!r}: an OAuth secret or token of it cannot be decrypted with any"
            " configured key; it was left as it is — restore the old key, or give the app's"
            " credential again (profiles edit) and authorise it again (profiles authorize)",
            err=True,
        )
    if result.unreadable or result.oauth_unreadable:
        for name in result.unreadable:
            click.echo(
                f"profile {name!r}: its stored password cannot be decrypted with any configured"
                " key; it was left as it is — restore the old key, or give the profile its"
                " password again (profiles edit NAME --password-stdin)",
                err=True,
            )
        counts = [f"{len(result.unreadable)} password(s)"] if result.unreadable else []
        if result.oauth_unreadable:
            counts.append(f"the OAuth secrets of {len(result.oauth_unreadable)} profile(s)")
        raise click.ClickException(f"{' and '.join(counts)} could not be re-encrypted")
