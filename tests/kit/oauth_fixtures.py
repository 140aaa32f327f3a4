"""Pytest fixtures for the local OAuth 2.0 authorisation server; registered in conftest.

- ``oauth_server``: an ``OAuthTestServer`` started for one test with the session's ``smtp_ca``
  (clients verify it with ``oauth_server.ca_bundle``) and stopped after it; the test fails if
  the server hit an internal error. A server per test, because its clients, tokens, clock
  settings and outages are the test's own.

  It also removes ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` from the environment for the
  test (and so for the processes it starts): requests lets them override a session's
  ``verify=`` (msal's ``verify=``, a session's ``.verify``), so where they are set, as on
  machines whose system CA store is given that way, no client would trust the test CA.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kit.oauth_server import OAuthTestServer
from tests.kit.smtp_fixtures import SmtpServerFactory
from tests.kit.smtp_server import SmtpTestCA, SmtpTestServer

__all__ = ["google_smtp", "microsoft_smtp", "oauth_server"]

# What requests reads from the environment in place of a session's verify= (requests'
# Session.merge_environment_settings: the environment wins unless verify= is given per call).
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def oauth_server(smtp_ca: SmtpTestCA, monkeypatch: pytest.MonkeyPatch) -> Iterator[OAuthTestServer]:
    """A Microsoft- and Google-style authorisation server over HTTPS, for this test only."""
    for variable in _CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    server = OAuthTestServer(ca=smtp_ca).start()
    yield server
    server.stop()
    if server.errors:
        pytest.fail("OAuth test server raised:\n" + "\n".join(server.errors), pytrace=False)


@pytest.fixture
def microsoft_smtp(
    smtp_server_factory: SmtpServerFactory, oauth_server: OAuthTestServer
) -> SmtpTestServer:
    """An Outlook-style SMTPS server that takes the tokens of ``oauth_server`` only."""
    return smtp_server_factory(tls="implicit", oauth=oauth_server, oauth_style="microsoft")


@pytest.fixture
def google_smtp(
    smtp_server_factory: SmtpServerFactory, oauth_server: OAuthTestServer
) -> SmtpTestServer:
    """A Gmail-style SMTPS server that takes the tokens of ``oauth_server`` only."""
    return smtp_server_factory(tls="implicit", oauth=oauth_server, oauth_style="google")
