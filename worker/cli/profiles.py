"""``mailworker profiles ...``: manage SMTP profiles, each a mail program's account page.

A password comes from a hidden prompt, from standard input or from an environment variable,
never from a command-line argument, which other users of the machine can read in the process
list. It is stored encrypted (:mod:`worker.crypto`) and never printed or logged.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
import structlog

from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.exits import ExitCode, UsageProblem, command_errors
from worker.cli.output import json_text, printable, table
from worker.crypto import PasswordCipher, load_cipher
from worker.devmail import is_dev_profile
from worker.errors import InvalidProfile, MailWorkerError, ProfileNotFound, SecretKeyError
from worker.listener import notify_channel
from worker.logs import register_secret
from worker.models import AUTH_METHODS, ENCRYPTION_MODES
from worker.moments import utc_iso
from worker.oauth_app import GrantSummary
from worker.oauth_flows import certificate_credential
from worker.presets import Preset, load_presets, require_preset
from worker.profile_check import CheckReport, check_as_worker
from worker.profile_saving import NewPassword, password_values, preset_or_none, settle_default
from worker.profiles import (
    CAP_FIELDS,
    OAUTH_FLOWS,
    Profile,
    ProfileEntry,
    ProfileFields,
    build_fields,
    edit_fields,
    ensure_valid,
    parse_profiles_file,
    profile_problems,
    profile_warnings,
)
from worker.repository import Repository

__all__ = ["profiles"]

log = structlog.get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_FIELD_NAMES = frozenset(field.name for field in dataclasses.fields(ProfileFields))


@click.group("profiles", short_help="Add, change, list and remove SMTP profiles.")
def profiles() -> None:
    """Add, change, list and remove SMTP profiles (mail account settings)."""


# --- input -----------------------------------------------------------------------------------


def _field_options(command: F) -> F:
    """The options that set profile fields, shared by ``add`` and ``edit``."""
    options = (
        click.option("--from", "from_address", metavar="ADDRESS", help="Outgoing address."),
        click.option("--display-name", metavar="TEXT", help="Name shown beside the address."),
        click.option("--reply-to", metavar="ADDRESS", help="Reply-to address; '' for none."),
        click.option("--description", metavar="TEXT", help="What the account is for."),
        click.option("--host", metavar="HOST", help="SMTP server name."),
        click.option("--port", type=int, help="SMTP server port."),
        click.option(
            "--encryption",
            type=click.Choice(ENCRYPTION_MODES),
            help="auto: implicit TLS on 465, required STARTTLS elsewhere; ssl: implicit TLS.",
        ),
        click.option(
            "--auth",
            "auth_method",
            type=click.Choice(AUTH_METHODS),
            help=(
                "login: login and password; oauth2: OAuth 2.0 sign-in (docs/oauth.md);"
                " none: no login."
            ),
        ),
        click.option(
            "--oauth-provider",
            type=click.Choice(sorted(OAUTH_FLOWS)),
            help="OAuth 2.0: whose sign-in (the presets office365, outlook and gmail name it).",
        ),
        click.option(
            "--oauth-flow",
            type=click.Choice(sorted({flow for flows in OAUTH_FLOWS.values() for flow in flows})),
            help="OAuth 2.0: how tokens are had; default: a person signs in (docs/oauth.md).",
        ),
        click.option("--oauth-client-id", metavar="ID", help="OAuth 2.0: the app's client id."),
        click.option(
            "--oauth-tenant",
            metavar="TENANT",
            help="Microsoft: organizations, consumers, common or a tenant id.",
        ),
        click.option(
            "--oauth-authority",
            metavar="URL",
            help="Microsoft: another cloud's sign-in host (GCC High, 21Vianet).",
        ),
        click.option("--oauth-token-url", metavar="URL", help="Google: another token endpoint."),
        click.option("--oauth-auth-url", metavar="URL", help="Google: another consent page."),
        click.option("--login", metavar="LOGIN", help="Default: from the preset's login rule."),
        click.option("--daily-cap", type=int, metavar="N", help="Messages per rolling 24 h."),
        click.option("--no-daily-cap", is_flag=True, help="No daily cap, whatever the preset."),
        click.option(
            "--daily-recipient-cap", type=int, metavar="N", help="Recipients per rolling 24 h."
        ),
        click.option(
            "--no-daily-recipient-cap",
            is_flag=True,
            help="No daily recipient cap, whatever the preset.",
        ),
        click.option(
            "--per-minute-cap", type=int, metavar="N", help="Messages per rolling minute."
        ),
        click.option(
            "--no-per-minute-cap", is_flag=True, help="No per-minute cap, whatever the preset."
        ),
        click.option(
            "--max-recipients-per-message",
            type=int,
            metavar="N",
            help="Recipients one message may have (Gmail: 100); more is refused at enqueue.",
        ),
        click.option(
            "--no-max-recipients-per-message",
            is_flag=True,
            help="No recipients-per-message limit, whatever the preset.",
        ),
        click.option("--max-connections", type=int, metavar="N", help="Parallel connections."),
        click.option(
            "--timeout",
            "timeout_seconds",
            type=int,
            metavar="SECONDS",
            help="How long to wait for the server at each step (default 60).",
        ),
        click.option(
            "--verify-tls/--no-verify-tls", default=None, help="Check the server certificate."
        ),
        click.option("--ca-bundle", metavar="FILE", help="CA file for the server certificate."),
        click.option("--enable/--disable", "enabled", default=None, help="Sending on or off."),
        click.option("--password-stdin", is_flag=True, help="Read the password from stdin."),
        click.option("--password-env", metavar="VAR", help="Read the password from $VAR."),
        click.option(
            "--oauth-client-secret-env",
            metavar="VAR",
            help="OAuth 2.0: read the app's client secret from $VAR.",
        ),
        click.option(
            "--oauth-certificate",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Microsoft app-only: a PEM file with the app's private key and certificate.",
        ),
        click.option(
            "--oauth-service-account-key",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Google Workspace: the service account's JSON key file.",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _given_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The profile fields set on the command line (click passes ``None`` for the others)."""
    given = {
        name: value for name, value in options.items() if name in _FIELD_NAMES and value is not None
    }
    # Each cap has a --no-... flag: no cap at all, whatever the preset says.
    for cap in CAP_FIELDS:
        if options[f"no_{cap}"]:
            if cap in given:
                option = "--" + cap.replace("_", "-")
                raise click.UsageError(f"give {option} or --no-{option[2:]}, not both")
            given[cap] = None
    return given


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _environment_password(variable: str) -> str | None:
    # The variable's name is chosen by the user at run time, so it cannot be a setting of
    # worker.settings, the module that otherwise alone reads the environment.
    return os.environ.get(variable) or None


def _read_password(*, from_stdin: bool, variable: str | None, prompt: str | None) -> str | None:
    """The password the user gives, if any, registered at once so that no log line shows it.

    ``prompt`` asks for it at a hidden prompt when standard input is a terminal and neither
    ``--password-stdin`` nor ``--password-env`` is given.
    """
    if from_stdin and variable:
        raise click.UsageError("give --password-stdin or --password-env, not both")
    password: str | None = None
    if from_stdin:
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    elif variable:
        password = _environment_password(variable)
        if password is None:
            raise click.UsageError(f"environment variable {variable} is not set or empty")
    elif prompt is not None and _stdin_is_terminal():
        password = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    else:
        return None
    register_secret(password)
    return password


@dataclasses.dataclass(frozen=True)
class _OAuthCredential:
    """The secret an OAuth app signs in with, as given: a client secret, a certificate or a
    service account's key, and the fields it implies (its flow, a key's client id)."""

    plain: str = dataclasses.field(repr=False)
    implied: Mapping[str, str]


def _oauth_credential(options: Mapping[str, Any]) -> _OAuthCredential | None:
    """The OAuth credential the options give, if any; read from a file or the environment,
    never from the command line."""
    variable = options.get("oauth_client_secret_env")
    certificate: Path | None = options.get("oauth_certificate")
    key_file: Path | None = options.get("oauth_service_account_key")
    if sum(given is not None for given in (variable, certificate, key_file)) > 1:
        raise click.UsageError(
            "give one of --oauth-client-secret-env, --oauth-certificate,"
            " --oauth-service-account-key"
        )
    if variable:
        secret = _environment_password(variable)
        if secret is None:
            raise click.UsageError(f"environment variable {variable} is not set or empty")
        register_secret(secret)
        return _OAuthCredential(secret, {})
    if certificate is not None:
        try:
            plain = certificate_credential(certificate.read_bytes())
        except ValueError:
            raise click.UsageError(
                f"{certificate} must hold the app's private key (unencrypted) and its"
                " certificate, both in PEM"
            ) from None
        register_secret(json.loads(plain)["private_key"])
        return _OAuthCredential(plain, {"oauth_flow": "client_credentials"})
    if key_file is not None:
        text = key_file.read_text(encoding="utf-8")
        try:
            key = json.loads(text)
            implied = {"oauth_flow": "service_account", "oauth_client_id": str(key["client_id"])}
            register_secret(str(key["private_key"]))
        except (ValueError, KeyError, TypeError):
            raise click.UsageError(
                f"{key_file} is not a service account's JSON key (client_id, private_key)"
            ) from None
        return _OAuthCredential(text, implied)
    return None


def _new_password(cli: CliContext, plain: str | None) -> NewPassword | None:
    return None if plain is None else NewPassword(plain, load_cipher(cli.settings))


def _preset_names() -> str:
    """The shipped presets' names, for the help text (the command itself reports a bad file)."""
    try:
        return ", ".join(sorted(load_presets()))
    except MailWorkerError:
        return "see `mailworker profiles presets`"


async def _existing(repository: Repository, name: str) -> Profile:
    profile = await repository.get_profile(name)
    if profile is None:
        raise ProfileNotFound(f"no profile is named {name!r}; `mailworker profiles list` shows all")
    return profile


def _echo_warnings(fields: ProfileFields, preset: Preset | None, *, prefix: str = "") -> None:
    for warning in profile_warnings(fields, preset):
        click.echo(f"warning: {prefix}{warning}", err=True)


def _describe(fields: ProfileFields) -> str:
    login = {
        "login": f"login {fields.login}",
        "oauth2": f"OAuth 2.0 as {fields.login} ({fields.oauth_provider}, {fields.oauth_flow})",
    }.get(fields.auth_method, "no login")
    disabled = "; sending disabled" if not fields.enabled else ""
    return (
        f"{fields.from_address} via {fields.host}:{fields.port}"
        f" (encryption {fields.encryption}, {login}{disabled})"
    )


def _changes(fields: ProfileFields, changed: Sequence[str]) -> str:
    """The changed fields with their new values (``enabled: no``); a password only by name."""
    shown = []
    for name in changed:
        if "password" in name or "credential" in name:
            shown.append(name)
            continue
        value = getattr(fields, name, None)
        text = "none" if value is None else _yes_no(value) if isinstance(value, bool) else value
        shown.append(f"{name}: {printable(str(text))}")
    return ", ".join(shown)


# --- add -------------------------------------------------------------------------------------


@profiles.command("add")
@click.argument("name")
@click.option(
    "--preset",
    "preset_name",
    metavar="PRESET",
    help=(
        "Take server, port, encryption, caps and login rule from a provider preset (any case):"
        f" {_preset_names()}."
    ),
)
@_field_options
@click.option("--default", "make_default", is_flag=True, help="Make it the default profile.")
@pass_cli
def add_profile(
    cli: CliContext,
    /,
    *,
    name: str,
    preset_name: str | None,
    password_stdin: bool,
    password_env: str | None,
    make_default: bool,
    **options: Any,
) -> None:
    """Add profile NAME. The first profile becomes the default one.

    The password is asked for at a hidden prompt, unless --password-stdin or --password-env
    gives it.
    """
    given = _given_fields(options)
    if "from_address" not in given:
        raise click.UsageError("--from ADDRESS (the outgoing address) is required")
    presets = load_presets()
    preset = require_preset(preset_name, presets) if preset_name else None
    credential = _oauth_credential(options)
    if credential is not None:
        given = {"auth_method": "oauth2", **credential.implied, **given}
    fields = build_fields({"name": name, **given}, preset)
    if (
        credential is not None
        and "oauth_flow" not in given
        and fields.oauth_provider == "microsoft"
    ):
        fields = dataclasses.replace(fields, oauth_flow="client_credentials")  # a secret: app-only
    prompt = f"Password for {fields.login} at {fields.host}"
    plain = _read_password(
        from_stdin=password_stdin,
        variable=password_env,
        prompt=prompt if fields.auth_method == "login" else None,
    )
    ensure_valid(
        fields,
        has_password=plain is not None,
        presets=presets,
        has_oauth_credential=credential is not None,
    )
    new = _new_password(cli, plain)
    token = None if new is None else new.token(preset)
    row = {**fields.as_row(), "password_encrypted": token}
    if credential is not None:
        row["oauth_credential_encrypted"] = load_cipher(cli.settings).encrypt(credential.plain)
    is_default = run_async(lambda: _insert(cli, row, make_default=make_default))
    log.info("profile_added", profile=fields.name, preset=fields.preset, default=is_default)
    click.echo(f"added profile {fields.name!r}: {_describe(fields)}")
    if is_default:
        click.echo(f"{fields.name!r} is the default profile")
    _echo_warnings(fields, preset)
    if fields.auth_method == "oauth2":
        click.echo(
            f"next: mailworker profiles authorize {fields.name}"
            f" ({_AUTHORIZE_STEP.get(fields.oauth_flow or '', 'see docs/oauth.md')})"
        )
        if preset is not None and preset.oauth_hint:
            click.echo(f"hint ({preset.name}): {preset.oauth_hint}")
    elif preset is not None:
        click.echo(f"hint ({preset.name}): {preset.hint}")


_AUTHORIZE_STEP = {
    "device_code": "shows a code to enter at the provider's sign-in page",
    "authorization_code": "opens the provider's consent page",
    "client_credentials": "checks that the app gets a token",
    "service_account": "checks that the service account gets a token for the mailbox",
}


async def _insert(cli: CliContext, row: Mapping[str, Any], *, make_default: bool) -> bool:
    name = str(row["name"])
    async with cli.repository() as repository:
        if await repository.profile_exists(name):
            raise UsageProblem(
                f"a profile named {name!r} exists already;"
                " change it with `mailworker profiles edit`"
            )
        await repository.create_profile(row)
        return await settle_default(repository, name, make_default=make_default)


# --- edit ------------------------------------------------------------------------------------


@profiles.command("edit", short_help="Change some fields of profile NAME.")
@click.argument("name")
@_field_options
@click.option("--ask-password", is_flag=True, help="Type a new password at a hidden prompt.")
@click.option("--no-password", "remove_password", is_flag=True, help="Remove the password.")
@pass_cli
def edit_profile(
    cli: CliContext,
    /,
    *,
    name: str,
    password_stdin: bool,
    password_env: str | None,
    ask_password: bool,
    remove_password: bool,
    **options: Any,
) -> None:
    """Change the given fields of profile NAME; the whole profile is checked again.

    Switching to --auth none removes the stored password.
    """
    changes = _given_fields(options)
    credential = _oauth_credential(options)
    if credential is not None:
        changes = {**credential.implied, **changes}
    password_options = (password_stdin, bool(password_env), ask_password, remove_password)
    if sum(password_options) > 1:
        raise click.UsageError(
            "give only one of --password-stdin, --password-env, --ask-password, --no-password"
        )
    if not changes and not any(password_options) and credential is None:
        raise click.UsageError("nothing to change: give the fields to change (see --help)")
    if ask_password and not _stdin_is_terminal():
        raise click.UsageError("--ask-password needs a terminal; use --password-stdin instead")
    plain = _read_password(
        from_stdin=password_stdin,
        variable=password_env,
        prompt=f"New password for profile {name!r}" if ask_password else None,
    )
    new = _new_password(cli, plain)
    credential_token = None
    if credential is not None:
        credential_token = load_cipher(cli.settings).encrypt(credential.plain)
    fields, changed = run_async(
        lambda: _update(
            cli, name, changes, new, remove=remove_password, credential=credential_token
        )
    )
    if not changed:
        click.echo(f"profile {name!r} is unchanged")
        return
    log.info("profile_updated", profile=name, fields=changed)
    click.echo(f"updated profile {name!r} ({_changes(fields, changed)}): {_describe(fields)}")
    _echo_warnings(fields, preset_or_none(fields.preset))


async def _update(
    cli: CliContext,
    name: str,
    changes: Mapping[str, Any],
    new: NewPassword | None,
    *,
    remove: bool,
    credential: bytes | None = None,
) -> tuple[ProfileFields, list[str]]:
    presets = load_presets()
    async with cli.repository() as repository:
        current = await _existing(repository, name)
        before = ProfileFields.of(current)
        fields = edit_fields(before, changes, preset_or_none(current.preset))
        password = password_values(current, fields, new, remove=remove)
        if credential is not None:
            password["oauth_credential_encrypted"] = credential
        has_password = password.get("password_encrypted", current.password_encrypted) is not None
        has_credential = (credential or current.oauth_credential_encrypted) is not None
        ensure_valid(
            fields,
            has_password=has_password,
            presets=presets,
            has_oauth_credential=has_credential,
        )
        changed = fields.differences(before)
        changed += [("password" if "password" in key else "oauth credential") for key in password]
        if changed:
            await repository.update_profile(name, {**fields.as_row(), **password})
            await repository.wake_workers(notify_channel(cli.settings.db_schema))
    return fields, changed


# --- list, show, presets ---------------------------------------------------------------------


DeliveryState = Literal["active", "paused", "disabled"]
# The delivery state that workers write; `show` as text folds it into its state line.
_PAUSE_FIELDS = ("paused_until", "pause_reason", "pause_hint", "pause_count")


def _is_paused(profile: Profile, now: datetime) -> bool:
    return profile.paused_until is not None and profile.paused_until > now


def _delivery_state(profile: Profile, now: datetime) -> DeliveryState:
    """Whether workers send through the profile now; a disabled profile is disabled first."""
    if not profile.enabled:
        return "disabled"
    return "paused" if _is_paused(profile, now) else "active"


_SECRET_FIELDS = frozenset({"password_encrypted", "oauth_credential_encrypted"})


def _public_view(
    profile: Profile, now: datetime, grant: GrantSummary | None = None
) -> dict[str, Any]:
    """Every field of a profile, the password and OAuth credential only as "set" or "not
    set", its state, and for OAuth who authorised it and until when its token lasts."""
    view: dict[str, Any] = {}
    oauth = profile.auth_method == "oauth2"
    for field in dataclasses.fields(profile):
        if field.name in _SECRET_FIELDS or (field.name.startswith("oauth_") and not oauth):
            continue
        value = getattr(profile, field.name)
        view[field.name] = utc_iso(value) if isinstance(value, datetime) else value
        if field.name == "enabled":
            view["state"] = _delivery_state(profile, now)
    view["password"] = "set" if profile.has_password else "not set"
    if oauth:
        view |= _grant_view(profile, grant)
    preset = preset_or_none(profile.preset)
    view["hint"] = (preset.oauth_hint if oauth else preset.hint) if preset else None
    return view


def _grant_view(profile: Profile, grant: GrantSummary | None) -> dict[str, Any]:
    """What may be shown of an OAuth profile's sign-in: never a token."""
    credential = profile.oauth_credential_encrypted is not None
    view: dict[str, Any] = {"oauth_credential": "set" if credential else "not set"}
    if grant is None or grant.authorized_at is None:
        view["oauth_authorized"] = f"not yet: mailworker profiles authorize {profile.name}"
        return view
    who = grant.authorized_by or "unknown"
    app_only = profile.oauth_flow in {"client_credentials", "service_account"}
    return view | {
        "oauth_authorized": f"by {who} at {utc_iso(grant.authorized_at)}",
        "oauth_scopes": grant.scopes,
        "oauth_access_token_expires": utc_iso(grant.access_expires_at),
        "oauth_last_refresh": utc_iso(grant.refreshed_at),
        "oauth_refreshes": grant.refresh_count,
        "oauth_refresh_token": (
            "stored" if grant.has_refresh_token else "not needed" if app_only else "none"
        ),
    }


def _state_text(profile: Profile, now: datetime) -> str:
    """The state line of `show`: active, disabled, or paused until when and why."""
    pause = ""
    if profile.paused_until is not None and _is_paused(profile, now):
        pause = f"paused until {utc_iso(profile.paused_until)}"
        pause += f": {profile.pause_reason}" if profile.pause_reason else ""
    if not profile.enabled:
        return "disabled" + (f"; also {pause}" if pause else "")
    return pause or "active"


def _text_lines(profile: Profile, view: Mapping[str, Any], now: datetime) -> Iterator[str]:
    """`show` as text: one field a line, the pause folded into the state and a hint line."""
    shown: dict[str, Any] = {}
    for key, value in view.items():
        if key in _PAUSE_FIELDS:
            continue
        shown[key] = _state_text(profile, now) if key == "state" else value
        if key == "state" and _is_paused(profile, now) and profile.pause_hint:
            shown["pause_hint"] = profile.pause_hint
    width = max(len(key) for key in shown)
    for key, value in shown.items():
        text = _yes_no(value) if isinstance(value, bool) else "" if value is None else value
        yield f"{key:<{width}}  {printable(str(text))}"  # the pause reason is a server's reply


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


async def _all_profiles(cli: CliContext) -> list[Profile]:
    async with cli.repository() as repository:
        return await repository.list_profiles()


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_cli
def list_profiles(cli: CliContext, as_json: bool) -> None:
    """List the profiles; * marks the default one."""
    found = run_async(lambda: _all_profiles(cli))
    if as_json:
        now = datetime.now(UTC)
        views = [_public_view(p, now) for p in found]
        click.echo(json_text(views, indent=2))
    elif not found:
        click.echo("no profiles yet; add one with `mailworker profiles add`")
    else:
        headers = ("NAME", "DEFAULT", "ENABLED", "FROM", "SERVER", "ENCRYPTION", "AUTH")
        rows = [
            (
                printable(p.name),
                "*" if p.is_default else "",
                _yes_no(p.enabled),
                printable(p.from_address),
                printable(f"{p.host}:{p.port}"),
                p.encryption,
                p.auth_method,
            )
            for p in found
        ]
        click.echo(table(headers, rows))


async def _one_profile(cli: CliContext, name: str) -> tuple[Profile, GrantSummary | None]:
    async with cli.repository() as repository:
        profile = await _existing(repository, name)
        grants = await repository.oauth_grants() if profile.auth_method == "oauth2" else {}
        return profile, grants.get(name)


@profiles.command("show", short_help="Print every field of profile NAME.")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_cli
def show_profile(cli: CliContext, name: str, as_json: bool) -> None:
    """Print every field of profile NAME (the password only as set or not set).

    The state says whether mail goes out through it: active, disabled, or paused until a
    moment, with the reason and what to do about it (the pause hint).
    """
    profile, grant = run_async(lambda: _one_profile(cli, name))
    now = datetime.now(UTC)
    view = _public_view(profile, now, grant)
    if as_json:
        click.echo(json_text(view, indent=2))
        return
    for line in _text_lines(profile, view, now):
        click.echo(line)


@profiles.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_cli
def list_presets(_cli: CliContext, as_json: bool) -> None:
    """List the provider presets that `profiles add --preset` takes."""
    presets = load_presets()
    if as_json:
        click.echo(json.dumps([p.model_dump() for p in presets.values()], indent=2))
        return
    headers = ("PRESET", "SERVER", "ENCRYPTION", "LOGIN", "DAILY CAP", "PROVIDER")
    rows = [
        (
            p.name,
            f"{p.host}:{p.port}",
            p.encryption,
            p.login_rule,
            str(p.daily_cap or ""),
            p.title,
        )
        for p in presets.values()
    ]
    click.echo(table(headers, rows))


# --- remove, set-default ---------------------------------------------------------------------


@profiles.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove it even if it is the default or in use.")
@pass_cli
def remove_profile(cli: CliContext, name: str, force: bool) -> None:
    """Remove profile NAME.

    The default profile, or one that unsent messages name, is removed only with --force:
    make another profile the default first (set-default).
    """
    was_default = run_async(lambda: _remove(cli, name, force=force))
    log.info("profile_removed", profile=name, was_default=was_default)
    click.echo(f"removed profile {name!r}")
    if was_default:
        click.echo("there is no default profile now; choose one with `profiles set-default`")


async def _remove(cli: CliContext, name: str, *, force: bool) -> bool:
    async with cli.repository() as repository:
        profile = await _existing(repository, name)
        waiting = await repository.count_waiting_messages(
            name, include_unassigned=profile.is_default
        )
        risks = []
        if profile.is_default:
            risks.append("it is the default profile (make another one the default first)")
        if waiting:
            risks.append(f"{waiting} unsent message(s) would go through it")
        if risks and not force:
            raise click.ClickException(
                f"not removing profile {name!r}: {'; '.join(risks)}; --force removes it anyway"
            )
        await repository.remove_profile(name)
        return profile.is_default


@profiles.command("set-default", short_help="Make profile NAME the default one.")
@click.argument("name")
@pass_cli
def set_default_profile(cli: CliContext, name: str) -> None:
    """Make profile NAME the default: messages that name no profile go through it."""
    profile = run_async(lambda: _make_default(cli, name))
    log.info("default_profile_set", profile=name)
    click.echo(f"{name!r} is the default profile")
    if not profile.enabled:
        click.echo(f"warning: {name!r} is disabled; enable it with --enable", err=True)


async def _make_default(cli: CliContext, name: str) -> Profile:
    async with cli.repository() as repository:
        profile = await _existing(repository, name)
        await repository.make_default_profile(name)
        return profile


# --- apply -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Planned:
    """One profile of a profiles file, ready to be compared with the stored one."""

    fields: ProfileFields
    preset: Preset | None
    new_password: NewPassword | None
    make_default: bool
    credential: _OAuthCredential | None = None


_Result = Literal["created", "updated", "unchanged"]
_RESULTS: tuple[_Result, ...] = ("created", "updated", "unchanged")


@dataclasses.dataclass(frozen=True)
class _Outcome:
    name: str
    result: _Result
    changed: list[str]


def _plan_entry(name: str, entry: ProfileEntry, cipher: Callable[[], PasswordCipher]) -> _Planned:
    presets = load_presets()
    preset = require_preset(entry.preset, presets) if entry.preset else None
    given = entry.given_fields()
    credential = _oauth_credential(
        {
            "oauth_client_secret_env": entry.oauth_client_secret_env,
            "oauth_certificate": _file_or_none(entry.oauth_certificate_file),
            "oauth_service_account_key": _file_or_none(entry.oauth_service_account_key_file),
        }
    )
    if credential is not None:
        given = {"auth_method": "oauth2", **credential.implied, **given}
    fields = build_fields({"name": name, **given}, preset)
    app_only = credential is not None and fields.oauth_provider == "microsoft"
    if app_only and "oauth_flow" not in given:
        fields = dataclasses.replace(fields, oauth_flow="client_credentials")
    new_password = None
    if entry.password_env is not None:
        plain = _environment_password(entry.password_env)
        if plain is None:
            message = f"environment variable {entry.password_env} (password_env) is not set"
            raise InvalidProfile([f"{message} or empty"])
        register_secret(plain)
        new_password = NewPassword(plain, cipher())
    return _Planned(fields, preset, new_password, entry.default, credential)


def _file_or_none(name: str | None) -> Path | None:
    if name is None:
        return None
    path = Path(name)
    if not path.is_file():
        raise InvalidProfile([f"file {name} does not exist"])
    return path


def _plan(
    entries: Mapping[str, ProfileEntry], cipher: Callable[[], PasswordCipher]
) -> list[_Planned]:
    """Every profile of the file, or :class:`InvalidProfile` with the problems of all."""
    planned: list[_Planned] = []
    problems: list[str] = []
    for name, entry in entries.items():
        try:
            planned.append(_plan_entry(name, entry, cipher))
        except InvalidProfile as exc:
            problems.extend(f"profile {name!r}: {problem}" for problem in exc.problems)
    defaults = [name for name, entry in entries.items() if entry.default]
    if len(defaults) > 1:
        problems.append(f"only one profile can be the default: {', '.join(defaults)} say so")
    if problems:
        raise InvalidProfile(problems)
    return planned


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read {path}: {exc}") from None


@profiles.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_cli
def apply_profiles(cli: CliContext, file: Path) -> None:
    """Create or update the profiles of a TOML FILE, all or none.

    Each [profiles.NAME] table holds a profile's fields; password_env names the environment
    variable with its password. Profiles not in the file are left alone.
    """
    entries = parse_profiles_file(_read_file(file), source=str(file))
    # Keys are loaded only if some profile gives a password (a relay-only file needs none).
    planned = _plan(entries, functools.cache(lambda: load_cipher(cli.settings)))
    outcomes, new_default = run_async(lambda: _apply(cli, planned))
    log.info(
        "profiles_applied",
        file=str(file),
        **{result: sum(o.result == result for o in outcomes) for result in _RESULTS},
    )
    for outcome in outcomes:
        details = f" ({', '.join(outcome.changed)})" if outcome.changed else ""
        click.echo(f"{outcome.result:<9}  {outcome.name}{details}")
    if new_default:
        click.echo(f"{new_default!r} is the default profile")
    for item, outcome in zip(planned, outcomes, strict=True):
        if outcome.result != "unchanged":
            _echo_warnings(item.fields, item.preset, prefix=f"profile {outcome.name!r}: ")


async def _apply(cli: CliContext, planned: list[_Planned]) -> tuple[list[_Outcome], str | None]:
    presets = load_presets()
    async with cli.repository() as repository:
        stored = {
            item.fields.name: await repository.get_profile(item.fields.name) for item in planned
        }
        problems = [
            f"profile {item.fields.name!r}: {problem}"
            for item in planned
            for problem in _problems(item, stored[item.fields.name], presets)
        ]
        if problems:
            raise InvalidProfile(problems)
        cipher = load_cipher(cli.settings) if any(item.credential for item in planned) else None
        outcomes = [
            await _save(repository, item, stored[item.fields.name], cipher) for item in planned
        ]
        if any(outcome.result == "updated" for outcome in outcomes):
            await repository.wake_workers(notify_channel(cli.settings.db_schema))
        new_default = await _apply_default(repository, planned)
    return outcomes, new_default


def _problems(item: _Planned, current: Profile | None, presets: Mapping[str, Preset]) -> list[str]:
    keeps_stored = (
        current is not None and current.has_password and item.fields.auth_method != "none"
    )
    has_password = item.new_password is not None or keeps_stored
    has_credential = item.credential is not None or (
        current is not None and current.oauth_credential_encrypted is not None
    )
    return profile_problems(
        item.fields,
        has_password=has_password,
        presets=presets,
        has_oauth_credential=has_credential,
    )


async def _save(
    repository: Repository, item: _Planned, current: Profile | None, cipher: PasswordCipher | None
) -> _Outcome:
    name = item.fields.name
    credential: dict[str, bytes] = {}
    if item.credential is not None and cipher is not None:
        stored = current.oauth_credential_encrypted if current is not None else None
        if stored is None or not _holds(cipher, stored, item.credential.plain, name):
            credential["oauth_credential_encrypted"] = cipher.encrypt(item.credential.plain)
    if current is None:
        token = None if item.new_password is None else item.new_password.token(item.preset)
        row = {**item.fields.as_row(), "password_encrypted": token, **credential}
        await repository.create_profile(row)
        return _Outcome(name, "created", [])
    new = item.new_password
    if new is not None and new.is_stored_in(current, item.preset):
        new = None
    password: dict[str, bytes | None] = {
        **password_values(current, item.fields, new, remove=False),
        **credential,
    }
    changed = item.fields.differences(ProfileFields.of(current))
    changed += [("password" if "password" in key else "oauth credential") for key in password]
    if changed:
        await repository.update_profile(name, {**item.fields.as_row(), **password})
    return _Outcome(name, "updated" if changed else "unchanged", changed)


def _holds(cipher: PasswordCipher, stored: bytes, plain: str, profile: str) -> bool:
    """Whether ``stored`` is ``plain`` encrypted (a lost key: it is not)."""
    try:
        return cipher.decrypt(stored, profile=profile) == plain
    except SecretKeyError:
        return False


async def _apply_default(repository: Repository, planned: list[_Planned]) -> str | None:
    """Make the profile marked ``default`` the default (or the first, if none is); its name."""
    current = await repository.get_default_profile()
    chosen = next((item.fields.name for item in planned if item.make_default), None)
    if chosen is None and (current is None or is_dev_profile(current)):
        chosen = planned[0].fields.name
    if chosen is None or (current is not None and current.name == chosen):
        return None
    await repository.make_default_profile(chosen)
    return chosen


# --- check -----------------------------------------------------------------------------------


@profiles.command("check", short_help="Log in as profile NAME would; report each stage.")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_cli
def check_profile_command(cli: CliContext, name: str, as_json: bool) -> None:
    """Connect, encrypt and log in as profile NAME would, then QUIT; nothing is sent.

    Prints what the server offers (TLS version, certificate, AUTH mechanisms, SIZE limit), or
    the stage, reason and hint of the failure. Exit codes: 0 the profile works, 1 it does not,
    2 no such profile, 4 the check could not run (database, settings, keys).
    """
    with command_errors():
        report = run_async(lambda: _check(cli, name))
    if as_json:
        click.echo(json_text(report.as_dict(), indent=2))
    else:
        # The report quotes the server (its replies, its certificate's names).
        click.echo(printable("\n".join(report.lines()), lines=True))
    click.get_current_context().exit(ExitCode.OK if report.works else ExitCode.NOT_OK)


async def _check(cli: CliContext, name: str) -> CheckReport:
    async with cli.repository() as repository:
        profile = await repository.get_profile(name)
    if profile is None:
        raise UsageProblem(f"no profile is named {name!r}; `mailworker profiles list` shows all")
    return await check_as_worker(profile, cli.settings, lambda **_: cli.repository())
