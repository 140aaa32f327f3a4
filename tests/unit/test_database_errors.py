"""What a database error means, in one line: the server, the problem, what to do (no I/O)."""

from __future__ import annotations

import socket

import asyncpg
import pytest

from worker.database_errors import explain, is_permission_denied, is_unreachable, where

URL = "postgresql://shop:s3cret@db.example.com:6432/mail"


def _caused_by(error: Exception, context: Exception) -> Exception:
    """``error`` raised while handling ``context``, as the driver raises it."""
    error.__context__ = context
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            socket.gaierror(-2, "Name or service not known"),
            "cannot reach the database server db.example.com:6432: unknown host name; check the"
            " host in DATABASE_URL",
        ),
        (
            ConnectionRefusedError(111, "Connect call failed"),
            "cannot reach the database server db.example.com:6432: connection refused; is"
            " PostgreSQL running and listening there?",
        ),
        (
            asyncpg.InvalidPasswordError("password authentication failed for user shop"),
            "the database server db.example.com:6432 refused the password of user shop",
        ),
        (
            asyncpg.InvalidAuthorizationSpecificationError('role "shop" does not exist'),
            'the database server db.example.com:6432 refused user shop: role "shop" does not exist',
        ),
        (
            asyncpg.InvalidCatalogNameError('database "mail" does not exist'),
            "database mail does not exist on the server db.example.com:6432: create it, or fix"
            " the database name in DATABASE_URL",
        ),
        (
            asyncpg.UndefinedTableError('relation "mail.profile" does not exist'),
            'database mail on db.example.com:6432 has no mailworker tables: run "mailworker'
            ' migrate"',
        ),
        (
            _caused_by(
                asyncpg.ClientConfigurationError(
                    'root certificate file "/root/.postgresql/root.crt" does not exist or'
                    " cannot be accessed"
                ),
                FileNotFoundError(2, "No such file or directory"),
            ),
            "cannot connect to db.example.com:6432 as DATABASE_URL says: root certificate file"
            ' "/root/.postgresql/root.crt" does not exist or cannot be accessed',
        ),
        (
            ConnectionError('PostgreSQL server at "db.example.com:6432" rejected SSL upgrade'),
            "the database server db.example.com:6432 does not offer TLS, which the URL's"
            " sslmode requires: turn ssl on in the server, or fix sslmode in DATABASE_URL",
        ),
    ],
    ids=[
        "unknown host",
        "refused",
        "password",
        "role",
        "database",
        "not migrated",
        "no CA file",
        "no TLS",
    ],
)
def test_each_problem_is_one_line_naming_the_server(error: Exception, expected: str) -> None:
    """Each kind of failure says where and what to do; the password never appears."""
    line = explain(error, URL)
    assert expected == line
    assert "s3cret" not in line


def test_a_wrapped_error_is_found_in_its_chain() -> None:
    """SQLAlchemy's wrapper around the driver's error is seen through (its cause)."""
    inner = asyncpg.InvalidCatalogNameError('database "mail" does not exist')
    outer = RuntimeError("(sqlalchemy...Error) wrapped")
    outer.__cause__ = inner
    assert explain(outer, URL).startswith("database mail does not exist")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h1:5432,h2:5433/db?target_session_attrs=any", "h1:5432, h2:5433/db"),
        ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db", "/var/run/postgresql/db"),
        ("postgresql+asyncpg://postgres@/mailworker?host=/run/pg", "/run/pg/mailworker"),
        ("postgres://db.example.com/mail?port=6432", "db.example.com:6432/mail"),
    ],
)
def test_every_form_of_url_names_its_server(url: str, expected: str) -> None:
    """Several hosts, a socket folder in place of the host or in the query, a port parameter."""
    assert expected == where(url)


def test_outages_are_told_from_refusals() -> None:
    """Waiting helps when the server is unreachable or starting; not after a refusal."""
    assert is_unreachable(ConnectionRefusedError(111, "refused"))
    assert is_unreachable(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert not is_unreachable(asyncpg.InvalidPasswordError("password authentication failed"))
    assert not is_unreachable(asyncpg.UndefinedTableError('relation "x" does not exist'))
    assert is_permission_denied(asyncpg.InsufficientPrivilegeError("permission denied"))
    assert not is_permission_denied(ConnectionRefusedError(111, "refused"))
