"""Pytest fixtures for real SMTP test servers; registered with ``pytest_plugins`` in conftest.

- ``smtp_ca``: one trustme CA per session (``.cert_bundle`` is the PEM file clients trust).
- ``smtp_server_factory``: ``smtp_server_factory(tls="implicit", accounts={...}, ...)`` starts
  an ``SmtpTestServer`` with those keyword arguments and this session's CA; every server it
  started is stopped at teardown, and the test fails if one of them hit an internal error.
- ``smtps_server``, ``starttls_server``: implicit TLS / required STARTTLS, AUTH required for
  ``SMTP_LOGIN`` with ``SMTP_PASSWORD``.
- ``plain_server``: a local relay without TLS or AUTH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.smtp_server import SmtpTestCA, SmtpTestServer

__all__ = [
    "SMTP_LOGIN",
    "SMTP_PASSWORD",
    "SmtpServerFactory",
    "plain_server",
    "smtp_ca",
    "smtp_server_factory",
    "smtps_server",
    "starttls_server",
]

SMTP_LOGIN = "user@example.com"
SMTP_PASSWORD = "s3cret-pass"

SmtpServerFactory = Callable[..., SmtpTestServer]
"""Takes ``SmtpTestServer``'s keyword arguments, except ``ca``, and returns a started server."""


@pytest.fixture(scope="session")
def smtp_ca(tmp_path_factory: pytest.TempPathFactory) -> SmtpTestCA:
    """The CA behind every test server's certificate; ``.cert_bundle`` is its PEM file."""
    return SmtpTestCA(tmp_path_factory.mktemp("smtp-ca"))


@pytest.fixture
def smtp_server_factory(smtp_ca: SmtpTestCA) -> Iterator[SmtpServerFactory]:
    """Start SMTP test servers; all are stopped when the test ends."""
    servers: list[SmtpTestServer] = []

    def start(**options: Any) -> SmtpTestServer:
        server = SmtpTestServer(ca=smtp_ca, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()
    # A broken match= or a kit bug shows up as a 500 reply; say where it came from.
    errors = [error for server in servers for error in server.errors]
    if errors:
        pytest.fail("SMTP test server raised:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def smtps_server(smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    """Implicit TLS (SMTPS, like port 465); AUTH required as SMTP_LOGIN / SMTP_PASSWORD."""
    return smtp_server_factory(tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD})


@pytest.fixture
def starttls_server(smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    """STARTTLS offered and required (like port 587); AUTH required as SMTP_LOGIN."""
    return smtp_server_factory(tls="starttls", accounts={SMTP_LOGIN: SMTP_PASSWORD})


@pytest.fixture
def plain_server(smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    """A local relay: no TLS, no AUTH."""
    return smtp_server_factory(tls="none")
