"""``mailworker status``: every profile's state, queue, last 24 hours and send cap at a glance."""

from __future__ import annotations

import dataclasses

import click

from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.output import age_text, echo_json, moment_text, printable, table
from worker.moments import utc_iso
from worker.oauth_app import GrantSummary
from worker.operations import FailureGroup, ProfileStatus

__all__ = ["status"]

HEADERS = (
    "PROFILE",
    "STATE",
    "PENDING",
    "SENDING",
    "SENT-24H",
    "FAILED-24H",
    "CAP",
    "CAP-LEFT",
    "CAP-FREES",
    "OLDEST-PENDING",
)


@dataclasses.dataclass(frozen=True)
class _Overview:
    profiles: list[ProfileStatus]
    failures: list[FailureGroup]
    # OAuth profiles: their sign-in, or None while nobody has authorised them.
    oauth: dict[str, GrantSummary | None]


async def _overview(cli: CliContext) -> _Overview:
    async with cli.repository() as repository:
        grants = await repository.oauth_grants()
        oauth = {
            profile.name: grants.get(profile.name)
            for profile in await repository.list_profiles()
            if profile.auth_method == "oauth2"
        }
        return _Overview(
            await repository.profile_overview(), await repository.failures_by_reason(), oauth
        )


def _oauth_note(name: str, grant: GrantSummary | None) -> str:
    """An OAuth profile's sign-in: who, and until when its token lasts (never the token)."""
    if grant is None or grant.authorized_at is None:
        return f"{name}: OAuth 2.0, not authorised yet: mailworker profiles authorize {name}"
    return (
        f"{name}: OAuth 2.0 as {grant.authorized_by or 'unknown'}, authorised"
        f" {utc_iso(grant.authorized_at)}; access token until {utc_iso(grant.access_expires_at)}"
        f" ({grant.refresh_count} renewals)"
    )


def _oauth_json(grant: GrantSummary | None) -> dict[str, object]:
    if grant is None:
        return {"authorized_by": None, "authorized_at": None}
    return {
        "authorized_by": grant.authorized_by,
        "authorized_at": utc_iso(grant.authorized_at),
        "scopes": grant.scopes,
        "access_token_expires": utc_iso(grant.access_expires_at),
        "last_refresh": utc_iso(grant.refreshed_at),
        "refreshes": grant.refresh_count,
    }


# A reason is one line in the table; --json and `messages show` have it whole.
_REASON_WIDTH = 100


def _failure_lines(failures: list[FailureGroup]) -> list[str]:
    lines = []
    for group in failures:
        where = (
            group.profile
            if group.profile_exists
            else f"{group.profile or '(no profile)'} (unroutable)"
        )
        reason = (
            group.reason
            if len(group.reason) <= _REASON_WIDTH
            else group.reason[: _REASON_WIDTH - 3] + "..."
        )
        lines.append(f"{group.messages:>6}  {where}: {reason}")
    return lines


def _cap_cells(item: ProfileStatus) -> tuple[str, str, str]:
    room = item.room
    if room is None:
        return "-", "-", "-"
    used = f"{item.sent_24h}/{item.daily_cap}" if item.daily_cap is not None else str(item.sent_24h)
    return used, str(room.messages), moment_text(item.cap_frees_at)


def _row(item: ProfileStatus) -> tuple[str, ...]:
    name = printable(f"{item.name} *" if item.is_default else item.name)
    return (
        name,
        item.state,
        str(item.pending),
        str(item.sending),
        str(item.sent_24h),
        str(item.failed_24h),
        *_cap_cells(item),
        age_text(item.oldest_pending_age),
    )


def _notes(item: ProfileStatus) -> list[str]:
    """The why of a row: a pause's time, reason and hint, a full cap, a disabled profile."""
    notes = []
    if item.state == "paused":
        hint = f" (hint: {item.pause_hint})" if item.pause_hint else ""
        notes.append(
            f"{item.name}: paused until {utc_iso(item.paused_until)}: {item.pause_reason}{hint}"
        )
    elif item.state == "disabled":
        notes.append(f"{item.name}: disabled; enable it with `profiles edit {item.name} --enable`")
    room = item.room
    if room is not None and item.cap_full:
        frees = f"; room again at {utc_iso(item.cap_frees_at)}" if item.cap_frees_at else ""
        notes.append(f"{item.name}: {room.full_cap or 'send cap'} reached{frees}")
    return notes


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
@pass_cli
def status(cli: CliContext, as_json: bool) -> None:
    """Show each profile's state, queue, last 24 hours and send cap.

    Per profile: active, paused (until when and why) or disabled; pending and in-flight
    messages; sent and failed in the last 24 h; the daily cap used, left and when it frees;
    the age of the oldest pending message. * marks the default profile. Caps count over a
    rolling 24 h: a send frees its place when it turns 24 h old. OAuth 2.0 profiles: who
    authorised them and until when their access token lasts. Then what failed in the last
    24 h, by reason, the unroutable too (no profile named, or one that does not exist).
    """
    overview = run_async(lambda: _overview(cli))
    found, failures = overview.profiles, overview.failures
    if as_json:
        checked = found[0].checked_at if found else None
        echo_json(
            {
                "checked_at": utc_iso(checked),
                "profiles": [item.as_json() for item in found],
                "failed_24h_by_reason": [group.as_json() for group in failures],
                "oauth": {name: _oauth_json(grant) for name, grant in overview.oauth.items()},
            }
        )
        return
    if not found:
        click.echo("no profiles yet; add one with `mailworker profiles add`")
    else:
        click.echo(table(HEADERS, [_row(item) for item in found]))
    notes = [note for item in found for note in _notes(item)]
    notes += [_oauth_note(name, grant) for name, grant in overview.oauth.items()]
    if notes:
        click.echo()
        for note in notes:
            click.echo(printable(note))  # pause reasons are the servers' own words
    if failures:
        click.echo()
        click.echo("failed in the last 24 h, by reason (`messages list --status failed`):")
        for line in _failure_lines(failures):
            click.echo(printable(line))
