"""Database URLs: the accepted forms, their libpq parameters, and what each driver is given."""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import quote, unquote

from worker.errors import ConfigurationError

__all__ = [
    "ENGINE_URL",
    "SCHEMES",
    "SSLMODES",
    "SUPPORTED_PARAMETERS",
    "DatabaseTarget",
    "Whereabouts",
    "check_database_url",
    "database_target",
    "libpq_url",
    "whereabouts",
    "with_scheme",
]

# Three spellings of one thing: libpq's two, and SQLAlchemy's name for its asyncpg driver.
SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# The engine's URL names only the dialect: asyncpg gets everything else from the DSN in
# connect_args, so it parses the URL exactly as it does for the listener.
ENGINE_URL = "postgresql+asyncpg://"

# libpq parameters that asyncpg reads from a DSN itself, with libpq's meaning.
_DRIVER_READS = frozenset(
    {
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
    }
)
# libpq parameters the server takes in the startup packet, where asyncpg puts every DSN
# parameter it does not know.
_STARTUP = frozenset({"application_name", "options"})
_TIMEOUT = "connect_timeout"  # asyncpg's ``timeout`` argument, which a DSN cannot carry
_SSL = "ssl"  # how SQLAlchemy's and asyncpg's docs spell sslmode; libpq knows ssl=true
_CACHE = "prepared_statement_cache_size"  # SQLAlchemy's asyncpg dialect; the engine's only
_DRIVER_CACHE = "statement_cache_size"  # asyncpg.connect's, given the same size

SUPPORTED_PARAMETERS = tuple(sorted({*_DRIVER_READS, *_STARTUP, _TIMEOUT, _SSL, _CACHE}))

_GSS = "asyncpg logs in with Kerberos only through the gssapi package, which is not installed"
_KEEPALIVE = "asyncpg sets no TCP keepalive or user timeout"
_TLS = "asyncpg has no such TLS setting"
# libpq parameters (and near misses) that cannot be honoured, and why.
_REFUSED = {
    "gssencmode": "asyncpg has no GSSAPI encryption",
    "krbsrvname": _GSS,
    "gsslib": _GSS,
    "gssdelegation": _GSS,
    "hostaddr": "asyncpg connects by host only; put the address in host",
    "keepalives": _KEEPALIVE,
    "keepalives_idle": _KEEPALIVE,
    "keepalives_interval": _KEEPALIVE,
    "keepalives_count": _KEEPALIVE,
    "tcp_user_timeout": _KEEPALIVE,
    "client_encoding": "asyncpg always talks UTF8",
    "channel_binding": "asyncpg cannot insist on an authentication method",
    "require_auth": "asyncpg cannot insist on an authentication method",
    "sslcrldir": f"{_TLS}; sslcrl takes one file",
    "sslcertmode": _TLS,
    "sslsni": _TLS,
    "sslcompression": _TLS,
    "sslkeylogfile": _TLS,
    "requirepeer": "asyncpg does not check the peer of a Unix socket",
    "load_balance_hosts": "asyncpg tries the hosts in their order only",
    "min_protocol_version": "asyncpg speaks protocol 3.0 only",
    "max_protocol_version": "asyncpg speaks protocol 3.0 only",
    "service": "asyncpg reads only part of a service file; put its parameters in the URL",
    "replication": "the service needs an ordinary session",
    "fallback_application_name": "give application_name",
    "database": "not a libpq parameter; the database is dbname (or the URL's path)",
}
_CHOICES = {
    "sslmode": SSLMODES,
    _SSL: ("true", *SSLMODES),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "sslnegotiation": ("postgres", "direct"),
    "ssl_min_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "ssl_max_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
}
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,30}$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_INTEGER = re.compile(r"^\s*-?\d+\s*$")
_PORTS = re.compile(r"^\d+(,\d*)*$")
_VERIFYING = ("require", "verify-ca", "verify-full")
_TLS_FILES = ("sslrootcert", "sslcert", "sslkey", "sslcrl")
# Characters left as they are in a rebuilt query value; libpq and asyncpg both read them so.
_SAFE_IN_VALUE = "/:,@"


@dataclasses.dataclass(frozen=True)
class DatabaseTarget:
    """One database URL as each consumer takes it; its repr shows no password.

    ``libpq_url`` is for libpq's tools (psql, pg_dump); ``driver_dsn`` is what asyncpg parses
    itself; ``connect_timeout`` (libpq's, in seconds) and ``statement_cache_size``
    (SQLAlchemy's ``prepared_statement_cache_size``) are the rest, given as arguments.
    """

    libpq_url: str = dataclasses.field(repr=False)
    driver_dsn: str = dataclasses.field(repr=False)
    connect_timeout: int | None = None
    statement_cache_size: int | None = None
    tls_files: tuple[tuple[str, str], ...] = ()  # (parameter, path) that the driver will open

    def check_files(self) -> None:
        """Raise :class:`ConfigurationError` naming a TLS file that cannot be read.

        The driver would raise a bare FileNotFoundError while connecting, which reads like a
        missing server socket.
        """
        for name, path in self.tls_files:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                message = f"{name} file {path} of the database URL cannot be read: {exc.strerror}"
                raise ConfigurationError(message) from None

    def timeout(self, default: float | None) -> float | None:
        """Seconds asyncpg may take to connect; None: as long as it takes.

        libpq's meaning: 0 or less waits indefinitely, and 2 s is the least it waits.
        """
        if self.connect_timeout is None:
            return default
        if self.connect_timeout <= 0:
            return None
        return float(max(2, self.connect_timeout))

    def asyncpg_arguments(self, *, default_timeout: float | None = None) -> dict[str, Any]:
        """Keyword arguments of ``asyncpg.connect``; without connect_timeout or a default,
        asyncpg's own timeout holds."""
        arguments: dict[str, Any] = {"dsn": self.driver_dsn}
        if self.connect_timeout is not None or default_timeout is not None:
            arguments["timeout"] = self.timeout(default_timeout)
        return arguments

    def engine_connect_args(self) -> dict[str, Any]:
        """``connect_args`` of an engine on :data:`ENGINE_URL`.

        The same size goes to asyncpg's own statement cache: the claim and the result batch
        run on the driver's connection (:mod:`worker.driver`), past SQLAlchemy's cache, and a
        pooler that needs ``0`` needs it there too.
        """
        arguments = self.asyncpg_arguments()
        if self.statement_cache_size is not None:
            arguments[_CACHE] = self.statement_cache_size
            arguments[_DRIVER_CACHE] = self.statement_cache_size
        return arguments


@dataclasses.dataclass
class _Parts:
    """A URL taken apart the way ``mask_url_password`` reads it, every part decoded."""

    user: str | None
    password: str | None
    hosts: str  # as given: host:port pairs, percent-encoded socket folders, [IPv6]
    database: str | None
    query: list[tuple[str, str]]


def check_database_url(url: str) -> None:
    """Raise :class:`ConfigurationError` in one line naming what cannot be honoured."""
    database_target(url)


def database_target(url: str) -> DatabaseTarget:
    """Any accepted URL as each consumer takes it, or :class:`ConfigurationError`."""
    parts = _split(url)
    given = dict(parts.query)
    for name, value in parts.query:
        _check_value(name, value)
    _check_conflicts(parts)
    sslmode = given.pop(_SSL, None)
    if sslmode is not None and "sslmode" in given:
        raise ConfigurationError("the database URL gives both ssl and sslmode: give sslmode")
    if sslmode is not None:
        # libpq reads ssl=true as sslmode=require; asyncpg's docs give the mode itself.
        given["sslmode"] = "require" if sslmode == "true" else sslmode
    if given.get("sslnegotiation") == "direct" and given.get("sslmode") not in _VERIFYING:
        raise ConfigurationError(
            "parameter sslnegotiation=direct of the database URL needs sslmode=require,"
            " verify-ca or verify-full"
        )
    timeout = given.pop(_TIMEOUT, None)
    cache = given.pop(_CACHE, None)
    driver = given
    libpq = dict(driver)
    if timeout is not None:
        libpq[_TIMEOUT] = timeout
    tls = given.get("sslmode") != "disable"
    return DatabaseTarget(
        libpq_url=_join(parts, libpq),
        driver_dsn=_join(parts, driver),
        connect_timeout=None if timeout is None else int(timeout),
        statement_cache_size=None if cache is None else int(cache),
        tls_files=tuple((name, given[name]) for name in _TLS_FILES if tls and name in given),
    )


@dataclasses.dataclass(frozen=True)
class Whereabouts:
    """Where a URL leads, for what a person reads: never the password."""

    server: str  # host:port, several of them, or a socket folder
    user: str | None
    database: str | None


def whereabouts(url: str) -> Whereabouts:
    """The server(s), user and database ``url`` names (as libpq would default the port)."""
    parts = _split(url)
    query = dict(parts.query)
    port = query.get("port", "5432")
    servers = []
    for item in [item for item in parts.hosts.split(",") if item] or [query.get("host", "")]:
        host, given_port = _host_and_port(unquote(item))
        host = host or "localhost"
        servers.append(host if host.startswith("/") else f"{host}:{given_port or port}")
    return Whereabouts(
        server=", ".join(servers),
        user=parts.user or query.get("user"),
        database=parts.database or query.get("dbname"),
    )


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it (psql, pg_dump): ``postgresql://``, libpq parameters only."""
    return database_target(url).libpq_url


def with_scheme(url: str, scheme: str) -> str:
    """``url`` under another accepted scheme, the rest exactly as given."""
    _scheme_of(url)
    return f"{scheme}://{url.partition('://')[2]}"


def _scheme_of(url: str) -> str:
    scheme, separator, _rest = url.partition("://")
    if separator and scheme in SCHEMES:
        return scheme
    if separator and _SCHEME.match(scheme):
        raise ConfigurationError(
            f"the database URL must be a postgresql:// URL, not a {scheme}:// one"
        )
    raise ConfigurationError("the database URL must be a postgresql:// URL")


def _split(url: str) -> _Parts:
    _scheme_of(url)
    rest = url.partition("://")[2]
    # As mask_url_password reads it: the query starts at the first "?", and the user part
    # ends at the last "@" before it, so a password may hold "@", ":" and "/" unencoded.
    before_query, _question, query = rest.partition("?")
    user_info, at, location = before_query.rpartition("@")
    hosts, slash, database = location.partition("/")
    user, colon, password = user_info.partition(":")
    return _Parts(
        user=unquote(user) if at and user else None,
        password=unquote(password) if colon else None,
        hosts=hosts,
        database=unquote(database) if slash and database else None,
        query=_parameters(query),
    )


def _parameters(query: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for item in query.split("&") if query else []:
        raw_name, equals, raw_value = item.partition("=")
        name, value = unquote(raw_name), unquote(raw_value)
        if not (equals and _NAME.match(name)):
            # Never echoed: a "?" in a password that is not percent-encoded lands here.
            raise ConfigurationError(
                "the database URL's query holds something that is not a name=value parameter"
                " (percent-encode ?, & and # in a password: %3F, %26, %23)"
            )
        if name in (existing for existing, _value in pairs):
            raise ConfigurationError(f"parameter {name} is given twice in the database URL")
        if name not in SUPPORTED_PARAMETERS:
            raise ConfigurationError(_refusal(name, item))
        pairs.append((name, value))
    return pairs


def _refusal(name: str, item: str) -> str:
    if name in _REFUSED:
        return f"parameter {name} of the database URL is not supported: {_REFUSED[name]}"
    if "@" in item:  # the rest of a password with an unencoded "?" in it: not to be echoed
        return (
            "the database URL's query holds an unknown parameter (percent-encode ? in a"
            " password: %3F)"
        )
    supported = ", ".join(SUPPORTED_PARAMETERS)
    return f"parameter {name} of the database URL is unknown; supported: {supported}"


def _check_value(name: str, value: str) -> None:
    choices = _CHOICES.get(name)
    if choices is not None and value not in choices:
        raise ConfigurationError(
            f"parameter {name} of the database URL must be one of {', '.join(choices)}"
            f", not {value!r}"
        )
    if name == "sslrootcert" and value == "system":
        raise ConfigurationError(
            "sslrootcert=system (the system's CA store) of the database URL is not supported by"
            " asyncpg: give the CA file, e.g. sslrootcert=/etc/ssl/certs/ca-certificates.crt"
        )
    if name == _TIMEOUT and not _INTEGER.match(value):
        raise ConfigurationError(
            f"parameter {name} of the database URL must be whole seconds, e.g. 10"
        )
    if name == _CACHE and not value.strip().isdigit():
        raise ConfigurationError(f"parameter {name} of the database URL must be 0 or more")
    if name == "port" and not _PORTS.match(value):
        raise ConfigurationError(
            "parameter port of the database URL must be a port number, or several separated"
            " by commas"
        )


def _check_conflicts(parts: _Parts) -> None:
    """A value in both the URL's main part and its query: libpq takes the query's, asyncpg
    the main part's; refused, so that both always agree."""
    in_main = {
        "user": parts.user is not None,
        "password": parts.password is not None,
        "host": any(_host_and_port(item)[0] for item in parts.hosts.split(",")),
        "port": any(_host_and_port(item)[1] for item in parts.hosts.split(",")),
        "dbname": parts.database is not None,
    }
    for name, _value in parts.query:
        if in_main.get(name):
            raise ConfigurationError(
                f"the database URL gives {name} twice, before the ? and as parameter {name}:"
                " give it once"
            )


def _host_and_port(item: str) -> tuple[str, str]:
    colon = item.rfind(":")
    if colon > item.rfind("]"):  # a colon inside [IPv6] brackets is not the port's
        return item[:colon], item[colon + 1 :]
    return item, ""


def _join(parts: _Parts, parameters: dict[str, str]) -> str:
    """A clean ``postgresql://`` URL: every part percent-encoded the one way both libpq and
    asyncpg decode (a "+" stays a plus, as libpq reads it)."""
    user_info = ""
    if parts.user is not None or parts.password is not None:
        user_info = quote(parts.user or "", safe="")
        if parts.password is not None:
            user_info += ":" + quote(parts.password, safe="")
        user_info += "@"
    path = "/" + quote(parts.database, safe="") if parts.database is not None else ""
    query = "&".join(
        f"{name}={quote(value, safe=_SAFE_IN_VALUE)}" for name, value in parameters.items()
    )
    return f"postgresql://{user_info}{parts.hosts}{path}{'?' + query if query else ''}"
