"""Pytest fixtures for real SMTP test servers; registered with ``pytest_plugins`` in conftest.

- ``smtp_ca``: one trustme CA per session (``.cert_bundle`` is the PEM file clients trust).
- ``smtp_server_factory``: ``smtp_server_factory(tls="implicit", accounts={...}, ...)`` starts
  an ``SmtpTestServer`` with those keyword arguments and this session's CA; every server it
  started is stopped at teardown, and the test fails if one of them hit an internal error.
- ``smtps_server``, ``starttls_server``: implicit TLS / required STARTTLS, AUTH required for
  ``SMTP_LOGIN`` with ``SMTP_PASSWORD``.
- ``plain_server``: a local relay without TLS or AUTH.
- ``port_465_server_factory``: like ``smtp_server_factory`` (``tls="implicit"`` unless given),
  but each server listens on port 465 of a loopback address of its own (127.0.0.2, 127.0.0.3,
  ...; each xdist worker from its own range, an address in use passed over), where
  ``encryption=auto`` means implicit TLS. Binding port 465 needs root (as in CI) or
  a lowered ``net.ipv4.ip_unprivileged_port_start``; when it cannot be bound the test is
  skipped with the reason, except under ``CI=...``, where it fails instead: CI must run it.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.kit.smtp_server import SmtpTestCA, SmtpTestServer

__all__ = [
    "IMPLICIT_TLS_PORT",
    "SMTP_LOGIN",
    "SMTP_PASSWORD",
    "SmtpServerFactory",
    "plain_server",
    "port_465_server_factory",
    "smtp_ca",
    "smtp_server_factory",
    "smtps_server",
    "starttls_server",
]

SMTP_LOGIN = "user@example.com"
SMTP_PASSWORD = "s3cret-pass"
IMPLICIT_TLS_PORT = 465
_ADDRESS_TRIES = 20

# Errors of a bind that this machine refuses: a privileged port without root, a port taken by
# a local mail server, a loopback address that is not configured (macOS has 127.0.0.1 only).
_CANNOT_BIND = frozenset({errno.EACCES, errno.EPERM, errno.EADDRINUSE, errno.EADDRNOTAVAIL})

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


@pytest.fixture
def port_465_server_factory(smtp_server_factory: SmtpServerFactory) -> SmtpServerFactory:
    """Start SMTP test servers on port 465, each on a loopback address of its own.

    Skips the test (fails it under ``CI``) when this machine cannot bind port 465.
    """
    # Each xdist worker starts from addresses of its own; an address in use all the same (a
    # concurrent run on this machine) is passed over for the next one.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = 2 + 40 * (int(worker) % 6 if worker.isdigit() else 0)
    addresses = (f"127.0.0.{n}" for n in itertools.count(first))

    def start(**options: Any) -> SmtpTestServer:
        chosen = options.pop("host", None)
        for _ in range(_ADDRESS_TRIES):
            host = chosen or next(addresses)
            try:
                return smtp_server_factory(
                    **{"tls": "implicit", **options, "host": host, "port": IMPLICIT_TLS_PORT}
                )
            except RuntimeError as exc:
                reason = _bind_refused(exc, host)
                if reason is None:
                    raise
                in_use = (
                    isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EADDRINUSE
                )
                if in_use and chosen is None:
                    continue
                if os.environ.get("CI"):
                    pytest.fail(f"{reason}; CI must run this test", pytrace=False)
                pytest.skip(reason)
        pytest.fail(f"port 465 was in use on {_ADDRESS_TRIES} loopback addresses", pytrace=False)

    return start


def _bind_refused(exc: RuntimeError, host: str) -> str | None:
    """Why the server could not listen on ``host``:465, if that is why it did not start."""
    cause = exc.__cause__
    if not isinstance(cause, OSError) or cause.errno not in _CANNOT_BIND:
        return None
    return (
        f"cannot listen on {host}:{IMPLICIT_TLS_PORT} ({os.strerror(cause.errno)}); testing"
        " encryption=auto on port 465 needs root (or a lowered"
        f" net.ipv4.ip_unprivileged_port_start), a free port 465 and the address {host}"
    )
