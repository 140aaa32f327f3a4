"""The service's settings: one typed object, read once from the environment and a TOML file.

Only this module reads ``os.environ``. Everything else receives a :class:`Settings`.
Precedence, highest first: environment variables, the settings file, the defaults below.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from worker.database_url import check_database_url
from worker.errors import ConfigurationError

__all__ = ["CONFIG_FILE_ENV", "Settings", "load_settings", "mask_url_password", "split_address"]

CONFIG_FILE_ENV = "MAILWORKER_CONFIG_FILE"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Settings(BaseSettings):
    """Every setting of the service, with its default and its meaning.

    Each field is read from ``MAILWORKER_<NAME>`` (``DATABASE_URL`` for the database) or from
    the same name in lower case in the settings file.
    """

    model_config = SettingsConfigDict(
        env_prefix="MAILWORKER_",
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,
    )

    # Declared before database_url, whose validator reads the file it names.
    database_url_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "MAILWORKER_DATABASE_URL_FILE", "DATABASE_URL_FILE", "database_url_file"
        ),
        description=(
            "File holding the database URL instead of DATABASE_URL (Docker and Kubernetes "
            "secrets); whitespace around it is ignored."
        ),
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "MAILWORKER_DATABASE_URL", "database_url"),
        description=(
            "PostgreSQL URL, e.g. postgresql://user:pass@host:5432/db?sslmode=verify-full; "
            "postgres:// and postgresql+asyncpg:// mean the same. libpq parameters such as "
            "sslmode, sslrootcert, connect_timeout and application_name are honoured; one "
            "that cannot be is refused (docs/operations.md#the-database-url). "
            "Empty: an embedded PostgreSQL is started under the data folder."
        ),
    )
    db_schema: str = Field(
        default="mail",
        description="PostgreSQL schema that holds every table of the service.",
    )
    data_dir: Path = Field(
        default=Path(".data"),
        description="Folder for the embedded database and the development secret key.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Fernet key(s) that encrypt stored passwords, comma-separated, newest first. "
            "Older keys still decrypt, so keys can be rotated. "
            "Empty, and no key file either: commands that need a key refuse to start, unless "
            "a development key is allowed (MAILWORKER_ALLOW_DEVELOPMENT_KEY)."
        ),
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="File holding the key(s) instead of MAILWORKER_SECRET_KEY (Docker secrets).",
    )
    allow_development_key: bool | None = Field(
        default=None,
        description=(
            "Whether, with neither MAILWORKER_SECRET_KEY nor MAILWORKER_SECRET_KEY_FILE set, a "
            "development key file is made and used under the data folder (with a warning). "
            "Whoever can read that folder can decrypt every stored password: never in "
            "production. Empty: only with the embedded database (DATABASE_URL empty); the "
            "container image sets false."
        ),
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="json: one JSON object a line; console: readable; auto: console on a TTY.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level that is written."
    )
    max_message_bytes: int = Field(
        default=25 * 1024 * 1024,
        gt=0,
        description="Largest message (body plus attachments) that enqueue accepts, in bytes.",
    )

    # --- the delivery worker ---------------------------------------------------------------
    worker_name: str | None = Field(
        default=None,
        description=(
            "Name of this worker in leases and logs; give each worker its own. Empty: host name,"
            " process id and a random part made at each start."
        ),
    )
    concurrency: int = Field(
        default=32, ge=1, le=1000, description="Messages one worker process has in flight at most."
    )
    attachment_budget: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        description=(
            "Attachment bytes one worker loads and sends at once; more wait their turn, and a"
            " larger message goes alone. Bounds memory: while a message is built and sent, each"
            " of its attachment bytes takes about 9 bytes of the worker's memory."
        ),
    )
    claim_depth: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Messages claimed per profile connection, so sends never wait for a claim.",
    )
    poll_interval: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds between polls while the LISTEN connection is down. While it is up, new"
            " rows wake the worker at once and it polls for nothing."
        ),
    )
    housekeeping_interval: float = Field(
        default=15.0,
        gt=0,
        description=(
            "Seconds between checks for lost leases, expired and unroutable messages, and for"
            " what other workers scheduled; the longest an idle worker sleeps."
        ),
    )
    lease_seconds: float = Field(
        default=120.0,
        ge=5,
        description="How long a claim lasts without renewal; a dead worker's rows return after it.",
    )
    shutdown_grace: float = Field(
        default=25.0, ge=0, description="Seconds to finish in-flight sends after SIGTERM/SIGINT."
    )
    retry_base: float = Field(
        default=30.0, gt=0, description="First retry delay in seconds (before jitter)."
    )
    retry_factor: float = Field(default=3.0, ge=1, description="Each retry waits this much longer.")
    retry_cap: float = Field(default=1800.0, gt=0, description="Longest retry delay in seconds.")
    max_attempts: int = Field(
        default=8, ge=1, description="Attempts before a temporarily failing message is failed."
    )
    max_age: float = Field(
        default=2 * 86400.0,
        gt=0,
        description="Seconds after enqueue when a temporarily failing message is failed.",
    )
    pause_base: float = Field(
        default=60.0, gt=0, description="First pause in seconds of a profile whose account fails."
    )
    pause_cap: float = Field(default=3600.0, gt=0, description="Longest profile pause in seconds.")
    progress_interval: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds between a busy worker's progress lines (sent, failed, retried, deferred,"
            " rate, pending); none while nothing moves."
        ),
    )
    idle_check_after: float = Field(
        default=30.0,
        ge=0,
        description="Seconds an SMTP connection may idle before a NOOP checks it before reuse.",
    )
    smtp_pipelining: bool = Field(
        default=True,
        description=(
            "Send with PIPELINING, and CHUNKING (BDAT), where the server offers them: a message"
            " then costs one round trip. Off: MAIL, RCPT and DATA, each waiting for its reply."
        ),
    )

    # --- health and metrics ----------------------------------------------------------------
    http_address: str | None = Field(
        default=None,
        description=(
            "host:port of the HTTP endpoint with /healthz and /metrics, e.g. 0.0.0.0:9090 in a "
            "container; port 0 picks a free port. Empty: no endpoint."
        ),
    )
    health_stale_after: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Seconds without a turn of the delivery loop, or without a claim while a slot is "
            "free, after which /healthz answers 503; more than twice the poll interval. "
            "Empty: 60, or three poll intervals if that is longer."
        ),
    )

    # --- the web console ---------------------------------------------------------------------
    console_listen: str = Field(
        default="127.0.0.1:8080",
        description=(
            "host:port where `mailworker console` serves the web console. The default answers "
            "this machine only; put a reverse proxy with HTTPS in front to reach it from "
            "elsewhere (docs/console.md)."
        ),
    )
    console_https: bool = Field(
        default=False,
        description=(
            "Whether people reach the console over HTTPS (a reverse proxy ending TLS): the "
            "session cookie is then sent over HTTPS only (Secure) and browsers are told to "
            "keep to HTTPS (Strict-Transport-Security)."
        ),
    )
    console_trusted_proxies: str = Field(
        default="127.0.0.1",
        description=(
            "Comma-separated addresses or networks of the reverse proxies whose "
            "X-Forwarded-For and X-Forwarded-Proto the console believes: they give the client's "
            "address to the sign-in rate limit and the log. In a container behind a proxy on "
            "the host, the container network's gateway (e.g. 172.16.0.0/12); never `*` where "
            "people reach the console without the proxy."
        ),
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The settings file arrives as init arguments; the environment must win over it.
        return env_settings, init_settings

    @field_validator("db_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(
                f"must be a lower-case PostgreSQL identifier (letters, digits, _), not {value!r}"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _url_is_usable(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        url = value.get_secret_value() if value is not None else ""
        url_file = info.data.get("database_url_file")
        if url_file is not None:
            if url:
                raise ValueError("set DATABASE_URL or DATABASE_URL_FILE, not both")
            url = _read_url_file(url_file)
        if not url:
            return None
        try:
            check_database_url(url)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return SecretStr(url)

    @field_validator("allow_development_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose writes an unset ${VARIABLE} as an empty string: that means the default.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("http_address")
    @classmethod
    def _address_is_host_port(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        split_address(value.strip())
        return value.strip()

    @field_validator("console_trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip() and part.strip() != "*":
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the part
        return value.strip()

    @field_validator("console_listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        split_address(value.strip())
        return value.strip()

    @field_validator("health_stale_after")
    @classmethod
    def _stale_after_spans_polls(cls, value: float | None, info: ValidationInfo) -> float | None:
        poll = info.data.get("poll_interval")
        if value is not None and poll is not None and value <= 2 * poll:
            raise ValueError(
                f"must be more than twice poll_interval ({poll:g} s): an idle worker claims "
                "once per poll"
            )
        return value

    @property
    def health_stale_limit(self) -> float:
        """``health_stale_after``, or its default: 60 s, or three poll intervals if longer."""
        if self.health_stale_after is not None:
            return self.health_stale_after
        return max(60.0, 3 * self.poll_interval)

    @property
    def development_key_allowed(self) -> bool:
        """``allow_development_key``, or its default: only with the embedded database."""
        if self.allow_development_key is not None:
            return self.allow_development_key
        return self.database_url is None

    def effective(self) -> dict[str, Any]:
        """The settings as plain values, secrets masked: what ``config show`` prints."""
        shown: dict[str, Any] = {}
        for name, value in self:
            if isinstance(value, SecretStr):
                shown[name] = "**********" if value.get_secret_value() else None
            elif isinstance(value, Path):
                shown[name] = str(value)
            else:
                shown[name] = value
        if self.database_url is not None:
            shown["database_url"] = mask_url_password(self.database_url.get_secret_value())
        return shown


def _read_url_file(path: Path) -> str:
    """The URL in ``DATABASE_URL_FILE``, without the newline a secret file usually ends in."""
    try:
        url = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read DATABASE_URL_FILE {path}: {reason}") from None
    if not url:
        raise ValueError(f"DATABASE_URL_FILE {path} is empty")
    return url


def split_address(address: str) -> tuple[str, int]:
    """``"0.0.0.0:9090"`` → ``("0.0.0.0", 9090)``; ``"[::1]:0"`` → ``("::1", 0)``.

    Raises :class:`ValueError` naming the expected form.
    """
    host, colon, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs brackets, or its port cannot be told apart
    if not (colon and host and port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(
            f"must be host:port, e.g. 0.0.0.0:9090, 127.0.0.1:0 or [::1]:9090, not {address!r}"
        )
    return host, int(port)


def mask_url_password(url: str) -> str:
    """``url`` with every password in it replaced by ``***``; all else stays readable.

    ``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``, and the same for a
    password with ``@`` or ``:`` in it, a percent-encoded one, several hosts, and the query's
    ``password=`` and ``sslpassword=``: ``postgresql://h/db?user=u&password=***``.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    before_query, question, query = rest.partition("?")
    # Up to the last "@" before the query, anything after the user's ":" may be password (it
    # may hold "@", ":", even an unencoded "/"), so all of it is hidden.
    user_info, at, hosts_and_path = before_query.rpartition("@")
    if at:
        user, colon, _password = user_info.partition(":")
        before_query = f"{user}:***@{hosts_and_path}" if colon else before_query
    if question:
        query = "&".join(_mask_parameter(parameter) for parameter in query.split("&"))
    return f"{scheme}{separator}{before_query}{question}{query}"


def _mask_parameter(parameter: str) -> str:
    """``password=secret`` → ``password=***``; ``sslpassword`` too; others as they are."""
    name, equals, value = parameter.partition("=")
    if equals and value and unquote(name).strip().lower().endswith("password"):
        return f"{name}=***"
    return parameter


def load_settings(config_file: Path | None = None) -> Settings:
    """Build the settings, or raise :class:`ConfigurationError` naming each mistake."""
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = Path(os.environ[CONFIG_FILE_ENV])
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            from_file = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            message = f"cannot read settings file {config_file}: {exc.strerror}"
            raise ConfigurationError(message) from None
        except tomllib.TOMLDecodeError as exc:
            message = f"settings file {config_file} is not valid TOML: {exc}"
            raise ConfigurationError(message) from None
    try:
        return Settings(**from_file)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for error in exc.errors(include_url=False, include_input=False):
        given = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            lines.append(f"  - {given}: unknown setting")
        else:
            field, variable = _setting_and_variable(given)
            lines.append(f"  - {field} ({variable}): {error['msg']}")
    return "\n".join(lines)


# Read without the MAILWORKER_ prefix too, as the tools around PostgreSQL name them.
_UNPREFIXED = ("database_url", "database_url_file")


def _setting_and_variable(given: str) -> tuple[str, str]:
    """The setting's name and its environment variable, however the value was given
    (``DATABASE_URL``, ``MAILWORKER_POLL_INTERVAL`` or ``poll_interval`` in a settings file)."""
    field = given.lower().removeprefix("mailworker_")
    variable = field.upper() if field in _UNPREFIXED else f"MAILWORKER_{field.upper()}"
    return field, variable
