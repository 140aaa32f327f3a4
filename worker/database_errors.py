"""What a database error means, in one line for a person: where, what went wrong, what to do.

Every command and the worker's log say the same thing for the same failure: an unknown host,
a refused port, a wrong password, a missing role or database, a database never migrated.
"""

from __future__ import annotations

import socket
import ssl

from asyncpg.exceptions import ClientConfigurationError

from worker.database_url import Whereabouts, whereabouts
from worker.errors import ConfigurationError, first_line

__all__ = ["explain", "is_permission_denied", "is_unreachable", "where"]

# SQLSTATEs a person can act on, and what to tell them. {server}, {user} and {database} are
# filled in from the URL.
_BY_SQLSTATE = {
    "28P01": "the database server {server} refused the password of user {user}",
    "28000": "the database server {server} refused user {user}: {detail}",
    "3D000": (
        "database {database} does not exist on the server {server}: create it, or fix the"
        " database name in DATABASE_URL"
    ),
    "42P01": 'database {database} on {server} has no mailworker tables: run "mailworker migrate"',
    "3F000": 'database {database} on {server} has no mailworker schema: run "mailworker migrate"',
    "42501": "user {user} may not do this on {server}: {detail} (docs/security.md has the grants)",
    "57P03": "the database server {server} is starting up or shutting down: try again shortly",
    "53300": "the database server {server} has no connection to spare: {detail}",
}


def where(url: str | None) -> str:
    """``host:port/database`` (or the socket folder) of ``url``, without user or password."""
    place = _whereabouts(url)
    return f"{place.server}/{place.database or ''}"


def explain(exc: BaseException, url: str | None) -> str:
    """One line: which database, what went wrong, and what to do about it."""
    place = _whereabouts(url)
    server = place.server
    names = {
        "server": server,
        "user": place.user or "(default user)",
        "database": place.database or "(default database)",
    }
    for error in _chain(exc):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate in _BY_SQLSTATE:
            return _BY_SQLSTATE[sqlstate].format(**names, detail=_first_line(error))
        # Before the network errors: a missing certificate file is a FileNotFoundError inside.
        if isinstance(error, ClientConfigurationError):
            return f"cannot connect to {server} as DATABASE_URL says: {_first_line(error)}"
        if "rejected SSL upgrade" in str(error):  # asyncpg's words; no class of its own
            return (
                f"the database server {server} does not offer TLS, which the URL's sslmode"
                " requires: turn ssl on in the server, or fix sslmode in DATABASE_URL"
            )
        network = _network_problem(error)
        if network is not None:
            return f"cannot reach the database server {server}: {network}"
    return f"database error on {where(url)}: {_first_line(exc)}"


def _whereabouts(url: str | None) -> Whereabouts:
    if url is None:
        return Whereabouts(server="(no database URL)", user=None, database=None)
    try:
        return whereabouts(url)
    except ConfigurationError:  # said elsewhere; here only the place matters
        return Whereabouts(server="(the configured database)", user=None, database=None)


# What a network-level error means, most specific first (gaierror and the others are OSErrors).
_NETWORK = (
    (socket.gaierror, "unknown host name; check the host in DATABASE_URL"),
    (ConnectionRefusedError, "connection refused; is PostgreSQL running and listening there?"),
    (FileNotFoundError, "no PostgreSQL socket there; is the server running?"),
    (TimeoutError, "no answer in time; check the host, the port and any firewall"),
)


# The server is starting, stopping or full: waiting helps, unlike a wrong password.
_PASSING_SQLSTATES = ("57P03", "53300", "57P01", "57P02")


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (waiting may help), rather than
    that it refuses us (a wrong password, a missing database or schema: a person must act)."""
    for error in _chain(exc):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate.startswith(("08", *_PASSING_SQLSTATES))
        if _network_problem(error) is not None:
            return True
    return True  # no SQLSTATE and no network error: a dropped connection, say


def is_permission_denied(exc: BaseException) -> bool:
    """Whether the database refused ``exc``'s statement for the role's missing privileges."""
    return any(getattr(error, "sqlstate", None) == "42501" for error in _chain(exc))


def _network_problem(error: BaseException) -> str | None:
    for kind, meaning in _NETWORK:
        if isinstance(error, kind):
            return meaning
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {_first_line(error)}; check sslmode and sslrootcert in DATABASE_URL"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, what it wraps (SQLAlchemy's ``orig``) and its causes, outermost first."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop(0)
        if error is None or any(error is known for known in seen):
            continue
        seen.append(error)
        pending += [getattr(error, "orig", None), error.__cause__, error.__context__]
    return seen


def _first_line(error: BaseException) -> str:
    line = first_line(error)
    # SQLAlchemy's text starts with the driver's class: "(...asyncpg.Error) role ... exist".
    if line.startswith("(") and ") " in line:
        line = line.split(") ", 1)[1]
    return line
