"""Small pieces the OAuth tests share: a profile's server options, counting renewals."""

from __future__ import annotations

from tests.kit.oauth_server import OAuthTestServer
from tests.kit.smtp_server import SmtpTestServer

__all__ = ["refreshes", "server_options"]


def server_options(server: SmtpTestServer) -> list[str]:
    """`profiles add` options that send through ``server`` over SMTPS, trusting its CA."""
    return [
        *["--host", server.hostname, "--port", str(server.port), "--encryption", "ssl"],
        *["--ca-bundle", str(server.cert_bundle), "--timeout", "10"],
    ]


def refreshes(oauth: OAuthTestServer) -> int:
    """Access tokens the server issued for a refresh token."""
    return sum(
        1
        for request in oauth.token_requests
        if request.grant_type == "refresh_token" and request.error is None
    )
