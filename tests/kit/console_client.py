"""The console in this process for integration tests: its users added as an operator adds them,
a Starlette TestClient on the app (the ``client`` fixture), and signing in through the login
form with its CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from tests.kit.console_browser import add_console_user
from worker.console.app import create_app
from worker.settings import Settings

__all__ = [
    "ADMIN_NAME",
    "ADMIN_PASSWORD",
    "DEFAULT_USERS",
    "VIEWER_NAME",
    "VIEWER_PASSWORD",
    "ConsoleUser",
    "add_console_users",
    "assert_no_secret_shown",
    "client",
    "console_client",
    "csrf_token",
    "post_sign_in",
    "sign_in",
]

ADMIN_NAME = "ewa"
ADMIN_PASSWORD = "admin-Haslo-2026-konsola"
VIEWER_NAME = "jan"
VIEWER_PASSWORD = "viewer-Haslo-2026-konsola"
# The address the console binds by default, so pages and redirects look as they do in use.
CONSOLE_BASE_URL = "http://127.0.0.1:8080"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class ConsoleUser(NamedTuple):
    """A console user as ``mailworker console users add`` takes it."""

    name: str
    role: str
    password: str


DEFAULT_USERS = (
    ConsoleUser(ADMIN_NAME, "admin", ADMIN_PASSWORD),
    ConsoleUser(VIEWER_NAME, "viewer", VIEWER_PASSWORD),
)


def add_console_users(
    cli_env: dict[str, str], users: tuple[ConsoleUser, ...] = DEFAULT_USERS
) -> None:
    """Add ``users`` through the CLI, the password on standard input, as an operator does."""
    for user in users:
        add_console_user(cli_env, user.name, user.password, user.role)


@contextmanager
def console_client(settings: Settings, database_url: str) -> Iterator[TestClient]:
    """The console app for ``settings`` on ``database_url``, started around the block."""
    with TestClient(create_app(settings, database_url), base_url=CONSOLE_BASE_URL) as client:
        yield client


@pytest.fixture
def client(settings: Settings, database_url: str, cli_env: dict[str, str]) -> Iterator[TestClient]:
    """The console on the test's database, its default admin and viewer added; signed out.

    A test module with other needs (a server to check against, say) defines its own."""
    add_console_users(cli_env)
    with console_client(settings, database_url) as client:
        yield client


def csrf_token(client: TestClient, path: str = "/login") -> str:
    """The CSRF token of the form on the page at ``path`` (the session's token)."""
    match = _CSRF_FIELD.search(client.get(path).text)
    assert match is not None, f"no csrf_token field on {path}"
    return match.group(1)


def post_sign_in(client: TestClient, name: str, password: str, **headers: str) -> Response:
    """Post the login form once and return the answer as it is, refused or not."""
    form = {"csrf_token": csrf_token(client), "name": name, "password": password}
    return client.post("/login", data=form, headers=headers, follow_redirects=False)


def sign_in(client: TestClient, name: str, password: str) -> str:
    """Sign in, which must succeed; where the console leads next."""
    answer = post_sign_in(client, name, password)
    assert 303 == answer.status_code, answer.text
    return answer.headers["location"]


def assert_no_secret_shown(answers: Iterable[Response], settings: Settings, *secrets: str) -> None:
    """No answer's body or headers holds one of ``secrets``, a kit user's password, a password
    hash or the secret key."""
    shown = "".join(answer.text + str(answer.headers) for answer in answers)
    assert settings.secret_key is not None
    key = settings.secret_key.get_secret_value()
    for secret in (*secrets, ADMIN_PASSWORD, VIEWER_PASSWORD, "$argon2", key):
        assert secret not in shown
