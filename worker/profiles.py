"""SMTP profiles: a mail program's account page, as stored in ``mail.profile``.

:class:`Profile` is a stored row. :class:`ProfileFields` is what a person sets on the page
(everything but the password); :func:`build_fields` fills it from a provider preset and
:func:`profile_problems` says in words why it would not work. :class:`ProfileEntry` is one
profile of a file for ``mailworker profiles apply``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from worker.addresses import address_problem, count_recipients, local_part
from worker.errors import InvalidProfile
from worker.presets import LoginRule, Preset, unknown_preset_problem
from worker.sentences import N_

__all__ = [
    "CAP_FIELDS",
    "OAUTH_FLOWS",
    "AuthMethod",
    "Encryption",
    "Profile",
    "ProfileEntry",
    "ProfileFields",
    "RecipientLimit",
    "build_fields",
    "clean_password",
    "default_login",
    "edit_fields",
    "encryption_port_problem",
    "ensure_valid",
    "parse_profiles_file",
    "preset_caps",
    "profile_problems",
    "profile_warnings",
]

Encryption = Literal["auto", "ssl", "starttls", "none"]
AuthMethod = Literal["login", "none", "oauth2"]
OAuthProvider = Literal["microsoft", "google"]
OAuthFlow = Literal["device_code", "client_credentials", "authorization_code", "service_account"]

IMPLICIT_TLS_PORT = 465
SUBMISSION_PORT = 587
# Limits of the CHECK constraints in worker/models.py, so a profile that passes here fits.
MAX_DAILY_CAP = 2**31 - 1  # the largest integer column value; every cap column is one
MAX_CONNECTIONS = 50
MAX_TIMEOUT_SECONDS = 3600

_NAME = re.compile(r"^\w(?:[\w .-]{0,62}\w)?$")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")
# Empty text in these fields means "not set", which the table stores as NULL.
_OPTIONAL_TEXT = frozenset(
    {
        "reply_to",
        "login",
        "ca_bundle",
        "preset",
        "oauth_client_id",
        "oauth_tenant",
        "oauth_authority",
        "oauth_token_url",
        "oauth_auth_url",
    }
)
# Microsoft's tenants for many organisations' (or persons') accounts: a person signs in there,
# an app-only token needs its own organisation's tenant.
_SHARED_TENANTS = frozenset({"common", "organizations", "consumers"})
# The flows each provider offers, the first one its default (docs/oauth.md).
OAUTH_FLOWS: Mapping[str, tuple[str, ...]] = {
    "microsoft": ("device_code", "client_credentials"),
    "google": ("authorization_code", "service_account"),
}
# The caps a profile may carry, as a person reads them; None (the column's NULL) is no cap.
CAP_FIELDS: Mapping[str, str] = {
    "daily_cap": N_("daily cap"),
    "daily_recipient_cap": N_("daily recipient cap"),
    "per_minute_cap": N_("per-minute cap"),
    "max_recipients_per_message": N_("max recipients per message"),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile:
    """One stored profile. The password stays encrypted; ``repr`` never shows even that."""

    id: int
    name: str
    enabled: bool
    from_address: str
    display_name: str
    reply_to: str | None
    description: str
    server_type: str
    host: str
    port: int
    encryption: Encryption
    auth_method: AuthMethod
    login: str | None
    password_encrypted: bytes | None = dataclasses.field(repr=False)
    verify_tls: bool
    ca_bundle: str | None
    daily_cap: int | None
    max_connections: int
    timeout_seconds: int
    is_default: bool
    preset: str | None
    daily_recipient_cap: int | None = None
    per_minute_cap: int | None = None
    max_recipients_per_message: int | None = None
    # OAuth 2.0 sign-in (auth_method "oauth2"); see worker/oauth_app.py.
    oauth_provider: OAuthProvider | None = None
    oauth_flow: OAuthFlow | None = None
    oauth_client_id: str | None = None
    oauth_tenant: str | None = None
    oauth_authority: str | None = None
    oauth_token_url: str | None = None
    oauth_auth_url: str | None = None
    oauth_credential_encrypted: bytes | None = dataclasses.field(default=None, repr=False)
    oauth_authorized_at: datetime | None = None
    # Delivery state, written by workers.
    paused_until: datetime | None = None
    pause_reason: str | None = None
    pause_hint: str | None = None
    pause_count: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Profile:
        return cls(**{name: value for name, value in row.items() if name in _PROFILE_FIELDS})

    @property
    def has_password(self) -> bool:
        return self.password_encrypted is not None

    def recipient_limit(self, recipients: Iterable[str]) -> RecipientLimit | None:
        """The limit of this profile that a message to ``recipients`` (to, cc and bcc
        together) exceeds; None if it can be sent. Enqueue refuses such a message, the worker
        fails it: one rule for both.

        Each address counts once, whatever its case or display name: one RCPT each. Over the
        whole daily recipient cap the message would wait for room forever.
        """
        count = count_recipients(recipients)
        if self.max_recipients_per_message is not None and count > self.max_recipients_per_message:
            return RecipientLimit(
                profile=self.name, count=count, limit=self.max_recipients_per_message, daily=False
            )
        if self.daily_recipient_cap is not None and count > self.daily_recipient_cap:
            return RecipientLimit(
                profile=self.name, count=count, limit=self.daily_recipient_cap, daily=True
            )
        return None


_PROFILE_FIELDS = frozenset(field.name for field in dataclasses.fields(Profile))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecipientLimit:
    """A message has more recipients than its profile can ever take in one message."""

    profile: str
    count: int  # distinct addresses of to, cc and bcc
    limit: int
    daily: bool  # the daily recipient cap; otherwise max_recipients_per_message

    def refusal(self) -> str:
        """Why enqueue refuses the message, and what to do instead.

        Refused, not split: copies to parts of the list would each show only their part in
        To and Cc, and one message would become several.
        """
        values = {"count": self.count, "profile": repr(self.profile), "limit": self.limit}
        if self.daily:
            return (
                N_(
                    "the message has %(count)s recipients (to, cc and bcc together); profile"
                    " %(profile)s allows at most %(limit)s a day (its daily recipient cap): send it"
                    " as several messages"
                )
                % values
            )
        return (
            N_(
                "the message has %(count)s recipients (to, cc and bcc together); profile"
                " %(profile)s allows at most %(limit)s per message: send it as several messages"
            )
            % values
        )

    def failure(self) -> str:
        """Why the worker fails a message that enqueue never checked (a row put in with SQL,
        or a profile whose limits were lowered since)."""
        values = {"count": self.count, "profile": self.profile, "limit": self.limit}
        if self.daily:
            return (
                N_(
                    "the message has %(count)s recipients, more than the daily cap of %(limit)s"
                    " recipients of profile %(profile)s"
                )
                % values
            )
        return (
            N_(
                "the message has %(count)s recipients; profile %(profile)s allows at most"
                " %(limit)s per message"
            )
            % values
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProfileFields:
    """The fields a person sets on a profile: every stored column but the password and flags.

    The server type is always SMTP, so it is not a field here.
    """

    name: str
    from_address: str
    host: str
    port: int
    enabled: bool = True
    display_name: str = ""
    reply_to: str | None = None
    description: str = ""
    encryption: Encryption = "auto"
    auth_method: AuthMethod = "login"
    login: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    daily_cap: int | None = None
    daily_recipient_cap: int | None = None
    per_minute_cap: int | None = None
    max_recipients_per_message: int | None = None
    max_connections: int = 2
    timeout_seconds: int = 60
    preset: str | None = None
    oauth_provider: OAuthProvider | None = None
    oauth_flow: OAuthFlow | None = None
    oauth_client_id: str | None = None
    oauth_tenant: str | None = None
    oauth_authority: str | None = None
    oauth_token_url: str | None = None
    oauth_auth_url: str | None = None

    @classmethod
    def of(cls, profile: Profile) -> ProfileFields:
        """The settable fields of a stored profile."""
        return cls(
            **{field.name: getattr(profile, field.name) for field in dataclasses.fields(cls)}
        )

    def as_row(self) -> dict[str, Any]:
        """Column values for ``mail.profile``."""
        return dataclasses.asdict(self)

    def differences(self, other: ProfileFields) -> list[str]:
        """Names of the fields whose values differ from ``other``'s."""
        theirs = other.as_row()
        return [name for name, value in self.as_row().items() if theirs[name] != value]


def _tidy(values: Mapping[str, Any]) -> dict[str, Any]:
    """Surrounding blanks dropped; an empty optional field becomes "not set"."""
    return {name: _tidy_value(name, value) for name, value in values.items()}


def _tidy_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = value.strip()
    return None if name in _OPTIONAL_TEXT and not value else value


def default_port(encryption: Encryption) -> int:
    """The usual port of an encryption mode: 465 for implicit TLS, 25 for none, else 587."""
    return {"ssl": IMPLICIT_TLS_PORT, "none": 25}.get(encryption, SUBMISSION_PORT)


def default_login(from_address: str, rule: LoginRule) -> str:
    """The login a provider expects for an address: all of it or the part before the @."""
    return local_part(from_address) if rule == "local_part" else from_address


def _with_default_login(fields: ProfileFields, preset: Preset | None) -> ProfileFields:
    if fields.auth_method == "oauth2":
        return _with_oauth_defaults(fields, preset)
    if fields.auth_method != "login" or fields.login is not None:
        return fields
    rule: LoginRule = preset.login_rule if preset else "full_address"
    return dataclasses.replace(fields, login=default_login(fields.from_address, rule))


def _with_oauth_defaults(fields: ProfileFields, preset: Preset | None) -> ProfileFields:
    """OAuth signs in as the mailbox (the whole address); the preset names the provider,
    the provider its usual flow, and Microsoft's tenant is the preset's."""
    provider = fields.oauth_provider or (preset.oauth_provider if preset else None)
    flows = OAUTH_FLOWS.get(provider or "", ())
    tenant = fields.oauth_tenant
    if provider == "microsoft" and tenant is None:
        tenant = (preset.oauth_tenant if preset else None) or "organizations"
    return dataclasses.replace(
        fields,
        login=fields.login or fields.from_address,
        oauth_provider=provider,
        oauth_flow=fields.oauth_flow or (flows[0] if flows else None),  # type: ignore[arg-type]
        oauth_tenant=tenant,
    )


def build_fields(given: Mapping[str, Any], preset: Preset | None) -> ProfileFields:
    """A new profile's fields: the preset's values, overridden by those ``given``.

    A preset's encryption belongs to its port: given another port and no encryption, the
    profile uses ``auto``. Without a port the encryption's usual one is used; without a
    login, the preset's login rule (or the full address) makes one from the outgoing address.
    The preset's limits become the profile's caps; a cap given as ``None`` means none.
    """
    given = _tidy(given)
    values: dict[str, Any] = {"host": "", "encryption": "auto"}
    if preset is not None:
        values |= {
            "host": preset.host,
            "port": preset.port,
            "encryption": preset.encryption,
            **preset_caps(preset),
            "preset": preset.name,
        }
        if given.get("port", preset.port) != preset.port and "encryption" not in given:
            values["encryption"] = "auto"
    values |= given
    values.setdefault("port", default_port(values["encryption"]))
    return _with_default_login(ProfileFields(**values), preset)


def preset_caps(preset: Preset) -> dict[str, int | None]:
    """The profile caps a preset's provider limits stand for, by profile field name."""
    return {
        "daily_cap": preset.daily_cap,
        "daily_recipient_cap": preset.recipients_per_day,
        "per_minute_cap": preset.messages_per_minute,
        "max_recipients_per_message": preset.max_recipients_per_message,
    }


def edit_fields(
    current: ProfileFields, changes: Mapping[str, Any], preset: Preset | None
) -> ProfileFields:
    """``current`` with ``changes`` applied (a login is derived if one becomes needed)."""
    return _with_default_login(dataclasses.replace(current, **_tidy(changes)), preset)


def clean_password(password: str, preset: Preset | None) -> str:
    """The password as the server wants it: Gmail shows app passwords in groups with spaces."""
    if preset is not None and preset.strip_password_spaces:
        password = "".join(password.split())
    if not password:
        raise InvalidProfile([N_("the password is empty")])
    return password


# --- validation ------------------------------------------------------------------------------


def profile_problems(
    fields: ProfileFields,
    *,
    has_password: bool,
    presets: Mapping[str, Preset],
    has_oauth_credential: bool = False,
) -> list[str]:
    """Every reason, in words, why ``fields`` would not make a working mail account."""
    preset = presets.get(fields.preset) if fields.preset else None
    problems = [
        *_name_problems(fields.name),
        *_address_problems(fields),
        *_server_problems(fields),
        *_auth_problems(fields, has_password, preset),
        *_oauth_problems(fields, has_password, has_oauth_credential),
        *_limit_problems(fields),
    ]
    if fields.preset and preset is None:
        problems.append(unknown_preset_problem(fields.preset, presets))
    return problems


def ensure_valid(
    fields: ProfileFields,
    *,
    has_password: bool,
    presets: Mapping[str, Preset],
    has_oauth_credential: bool = False,
) -> None:
    """Raise :class:`InvalidProfile` with every problem of ``fields``, if there is one."""
    problems = profile_problems(
        fields,
        has_password=has_password,
        presets=presets,
        has_oauth_credential=has_oauth_credential,
    )
    if problems:
        raise InvalidProfile(problems)


def _name_problems(name: str) -> Iterator[str]:
    if not name:
        yield N_("account name is empty")
    elif not _NAME.match(name):
        yield N_(
            "account name %(name)s may contain only letters, digits, spaces, '.', '_' and '-',"
            " up to 64 characters, starting and ending with a letter or digit"
        ) % {"name": repr(name)}


def _address_problems(fields: ProfileFields) -> Iterator[str]:
    problem = address_problem(fields.from_address, field=N_("outgoing address (from_address)"))
    if problem:
        yield problem
    if fields.reply_to is not None:
        problem = address_problem(fields.reply_to, field=N_("reply-to address"))
        if problem:
            yield problem
    # The display name goes into the From header, where a line break would start a new header.
    if any(char in fields.display_name for char in "\r\n\0"):
        yield N_("display name contains a line break or NUL character")


def _server_problems(fields: ProfileFields) -> Iterator[str]:
    problem = _host_problem(fields.host)
    if problem:
        yield problem
    if not 1 <= fields.port <= 65535:
        yield N_("port %(port)s must be between 1 and 65535") % {"port": fields.port}
    problem = encryption_port_problem(fields.encryption, fields.port)
    if problem:
        yield problem


def _host_problem(host: str) -> str | None:
    if not host:
        return N_("server host is empty; give the SMTP server's name (e.g. smtp.wp.pl) or a preset")
    if "://" in host:
        return N_(
            "server host %(host)s must be the server name only, e.g. smtp.wp.pl, no smtp://"
        ) % {"host": repr(host)}
    if _HOSTNAME.match(host) or _is_ip_address(host):
        return None
    return N_(
        "server host %(host)s is not a server name or IP address (the port goes in its own field)"
    ) % {"host": repr(host)}


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _oauth_problems(
    fields: ProfileFields, has_password: bool, has_credential: bool
) -> Iterator[str]:
    if fields.auth_method != "oauth2":
        return
    if has_password:
        yield N_("a password is given but authentication is oauth2 (it signs in without one)")
    if fields.encryption == "none":
        yield N_("encryption none with OAuth 2.0: the token would travel unencrypted")
    provider, flow = fields.oauth_provider, fields.oauth_flow
    if provider is None or provider not in OAUTH_FLOWS:
        yield N_(
            "authentication oauth2 needs a provider: --oauth-provider microsoft or google"
            " (the presets office365, outlook, gmail and gmail-workspace name it)"
        )
        return
    if flow not in OAUTH_FLOWS[provider]:
        yield N_("oauth flow %(flow)s is not one of %(provider)s's: %(flows)s") % {
            "flow": flow,
            "provider": provider,
            "flows": ", ".join(OAUTH_FLOWS[provider]),
        }
    if not fields.oauth_client_id:
        yield N_(
            "authentication oauth2 needs the client id of the app registered with the provider"
        )
    yield from _oauth_app_problems(fields, has_credential)
    for name in ("oauth_authority", "oauth_token_url", "oauth_auth_url"):
        url = getattr(fields, name)
        if url is not None and not url.startswith("https://"):
            yield N_("%(setting)s %(url)s must be an https:// address") % {
                "setting": name.replace("_", " "),
                "url": repr(url),
            }


_MISSING_CREDENTIAL = {
    "client_credentials": N_("oauth flow client_credentials needs a client secret or certificate"),
    "service_account": N_("oauth flow service_account needs the service account's key file"),
    "authorization_code": N_("oauth flow authorization_code needs the OAuth client's secret"),
}


def _oauth_app_problems(fields: ProfileFields, has_credential: bool) -> Iterator[str]:
    """What the app of the profile's flow lacks: its credential, its own tenant."""
    flow = fields.oauth_flow
    tenant = fields.oauth_tenant or "organizations"
    if flow == "client_credentials" and tenant in _SHARED_TENANTS:
        yield N_(
            "oauth flow client_credentials signs in as your organisation's app: give your"
            " tenant id or domain (--oauth-tenant contoso.onmicrosoft.com), not %(tenant)s"
        ) % {"tenant": tenant}
    if flow in _MISSING_CREDENTIAL and not has_credential:
        yield _MISSING_CREDENTIAL[flow]


def encryption_port_problem(encryption: str, port: int) -> str | None:
    """The usual mix-up of implicit TLS and STARTTLS ports, in words; ``None`` when none."""
    if encryption == "ssl" and port == SUBMISSION_PORT:
        return N_("port 587 expects STARTTLS; use encryption=starttls or auto, or port 465 for ssl")
    if encryption in {"starttls", "none"} and port == IMPLICIT_TLS_PORT:
        return N_(
            "port 465 expects implicit TLS, not %(encryption)s; use encryption=ssl or auto,"
            " or port 587 for starttls"
        ) % {"encryption": encryption}
    return None


def _auth_problems(fields: ProfileFields, has_password: bool, preset: Preset | None) -> list[str]:
    if fields.auth_method == "oauth2":
        return []  # _oauth_problems
    if fields.auth_method == "none":
        if has_password:
            return [N_("a password is given but authentication is none; remove one of them")]
        return []
    problems = []
    if fields.encryption == "none":
        problems.append(
            N_(
                "encryption none with login and password: a password would travel unencrypted;"
                " use encryption auto, ssl or starttls"
            )
        )
    if not fields.login:
        problems.append(N_("authentication login needs a login (user name)"))
    elif preset is not None:
        problems.extend(_login_rule_problems(fields.login, fields.from_address, preset))
    if not has_password:
        problems.append(
            N_(
                "authentication login needs a password and none is given (type it at the prompt,"
                " or use --password-stdin, --password-env or password_env)"
            )
        )
    return problems


def _login_rule_problems(login: str, from_address: str, preset: Preset) -> Iterator[str]:
    if preset.login_rule == "local_part" and "@" in login:
        yield N_("%(preset)s expects the login without the domain: %(local)s, not %(login)s") % {
            "preset": preset.name,
            "local": repr(local_part(login)),
            "login": repr(login),
        }
    elif preset.login_rule == "full_address" and "@" not in login:
        yield N_(
            "%(preset)s expects the full e-mail address as the login, e.g. %(address)s,"
            " not %(login)s"
        ) % {"preset": preset.name, "address": repr(from_address), "login": repr(login)}


def _limit_problems(fields: ProfileFields) -> Iterator[str]:
    for name, label in CAP_FIELDS.items():
        cap = getattr(fields, name)
        if cap is not None and cap < 1:
            yield N_("%(field)s %(number)s must be at least 1 (leave it empty for no cap)") % {
                "field": label,
                "number": cap,
            }
        elif cap is not None and cap > MAX_DAILY_CAP:
            yield N_(
                "%(field)s %(number)s must be at most %(most)s (leave it empty for no cap)"
            ) % {"field": label, "number": cap, "most": MAX_DAILY_CAP}
    if not 1 <= fields.max_connections <= MAX_CONNECTIONS:
        yield N_("max connections %(count)s must be between 1 and %(most)s") % {
            "count": fields.max_connections,
            "most": MAX_CONNECTIONS,
        }
    if not 1 <= fields.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        yield N_("timeout %(seconds)s s must be between 1 and %(most)s seconds") % {
            "seconds": fields.timeout_seconds,
            "most": MAX_TIMEOUT_SECONDS,
        }


def profile_warnings(fields: ProfileFields, preset: Preset | None) -> list[str]:
    """Doubtful but possible settings, in words: worth a note, not a refusal."""
    warnings = []
    if preset is not None and fields.host == preset.host and fields.port not in preset.ports:
        documented = " and ".join(str(port) for port in preset.ports)
        warnings.append(
            N_(
                "%(provider)s documents port %(ports)s for %(server)s;"
                " port %(port)s is not confirmed to work"
            )
            % {
                "provider": preset.title,
                "ports": documented,
                "server": preset.host,
                "port": fields.port,
            }
        )
    if preset is not None:
        warnings.extend(_caps_above_provider(fields, preset))
    if not fields.verify_tls:
        warnings.append(
            N_(
                "verify_tls is off: the server's certificate is not checked, so anyone between"
                " here and %(server)s could pose as it and read the login"
            )
            % {"server": fields.host}
        )
        if fields.ca_bundle:
            warnings.append(N_("ca_bundle is ignored while verify_tls is off"))
    return warnings


# What each cap counts, in the words of "<provider> allows about N <unit>".
_CAP_UNITS = {
    "daily_cap": N_("messages a day"),
    "daily_recipient_cap": N_("recipients a day"),
    "per_minute_cap": N_("messages a minute"),
    "max_recipients_per_message": N_("recipients per message"),
}


def _caps_above_provider(fields: ProfileFields, preset: Preset) -> Iterator[str]:
    """A cap above the provider's limit: the provider, not the cap, would stop the mail."""
    for name, limit in preset_caps(preset).items():
        cap = getattr(fields, name)
        if limit is not None and cap is not None and cap > limit:
            yield N_(
                "%(provider)s allows about %(limit)s %(unit)s;"
                " a %(field)s of %(number)s may get the account blocked"
            ) % {
                "provider": preset.title,
                "limit": limit,
                "unit": _CAP_UNITS[name],
                "field": CAP_FIELDS[name],
                "number": cap,
            }


# --- files for ``profiles apply`` ------------------------------------------------------------


class ProfileEntry(BaseModel):
    """One ``[profiles.NAME]`` table of a profiles file; a field left out takes its default.

    The password is never in the file: ``password_env`` names the environment variable that
    holds it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    preset: str | None = None
    enabled: bool | None = None
    from_address: str
    display_name: str | None = None
    reply_to: str | None = None
    description: str | None = None
    host: str | None = None
    port: int | None = None
    encryption: Encryption | None = None
    auth_method: AuthMethod | None = None
    login: str | None = None
    password_env: str | None = None
    # "none": no cap, even if the preset has one (TOML has no null).
    daily_cap: int | Literal["none"] | None = None
    daily_recipient_cap: int | Literal["none"] | None = None
    per_minute_cap: int | Literal["none"] | None = None
    max_recipients_per_message: int | Literal["none"] | None = None
    max_connections: int | None = None
    timeout_seconds: int | None = None
    verify_tls: bool | None = None
    ca_bundle: str | None = None
    oauth_provider: OAuthProvider | None = None
    oauth_flow: OAuthFlow | None = None
    oauth_client_id: str | None = None
    oauth_tenant: str | None = None
    oauth_authority: str | None = None
    oauth_token_url: str | None = None
    oauth_auth_url: str | None = None
    # The app's credential, like the password never in the file itself (docs/oauth.md).
    oauth_client_secret_env: str | None = None
    oauth_certificate_file: str | None = None
    oauth_service_account_key_file: str | None = None
    default: bool = False

    def given_fields(self) -> dict[str, Any]:
        """The profile fields the table sets, as :func:`build_fields` takes them."""
        given = self.model_dump(
            exclude_unset=True, exclude={"preset", "password_env", "default", *_CREDENTIAL_KEYS}
        )
        for name in CAP_FIELDS:
            if given.get(name) == "none":
                given[name] = None
        return given


_CREDENTIAL_KEYS = frozenset(
    {"oauth_client_secret_env", "oauth_certificate_file", "oauth_service_account_key_file"}
)


class _ProfilesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    profiles: dict[str, ProfileEntry]


def parse_profiles_file(text: str, *, source: str) -> dict[str, ProfileEntry]:
    """The profiles of a TOML profiles file, by name; :class:`InvalidProfile` names mistakes."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidProfile([f"{source} is not valid TOML: {exc}"]) from None
    try:
        profiles = _ProfilesFile.model_validate(data).profiles
    except ValidationError as exc:
        problems = [
            f"{source}: {'.'.join(str(part) for part in error['loc'])}: {_entry_error(error)}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidProfile(problems) from None
    if not profiles:
        raise InvalidProfile([f"{source} has no [profiles.NAME] tables"])
    return profiles


def _entry_error(error: ErrorDetails) -> str:
    if error["type"] != "extra_forbidden":
        return error["msg"]
    if "password" in str(error["loc"][-1]):
        return "passwords never go into the file; name an environment variable with password_env"
    return "unknown field"
