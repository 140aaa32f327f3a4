"""The parts of `profiles authorize` and of the token grants that need no provider: the
loopback listener the consent page comes back to, the code in a pasted address, how a
provider's error is worded, and the stored form of a certificate."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from worker.cli.authorize import NotAuthorised, _code_in, _Loopback
from worker.cli.exits import UsageProblem
from worker.errors import AppRefused, SignInInvalid, TokenEndpointUnavailable
from worker.oauth_app import OAuthApp
from worker.oauth_flows import (
    _email_in,
    _error_of,
    _microsoft_error,
    certificate_credential,
    renew,
)
from worker.profiles import Profile

APP = OAuthApp(
    profile="biuro",
    provider="microsoft",
    flow="device_code",
    client_id="5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11",
    mailbox="anna@contoso.com",
    authority="https://login.microsoftonline.com/organizations",
    token_url="https://oauth2.googleapis.com/token",
    auth_url="https://accounts.google.com/o/oauth2/auth",
    verify=True,
    timeout=5.0,
)


def test_the_loopback_listener_takes_the_browsers_return_and_nothing_else() -> None:
    """A request without a code is a 404 (a browser's favicon); the one with the code is
    answered with a page saying it is done, and handed over."""
    with _Loopback(0) as loopback:
        assert loopback.redirect_uri.startswith("http://127.0.0.1:")
        stray = requests.get(loopback.redirect_uri + "favicon.ico", timeout=5)
        back = requests.get(loopback.redirect_uri + "?state=s1&code=4%2F0Ab-kod", timeout=5)
        returned = loopback.wait(5)
    assert (404, 200) == (stray.status_code, back.status_code)
    assert "4/0Ab-kod" == _code_in(returned)


def test_the_loopback_listener_gives_up_after_its_wait() -> None:
    """Nobody comes back: the command ends saying so, instead of waiting for ever."""
    with _Loopback(0) as loopback, pytest.raises(NotAuthorised, match="within 0 s"):
        loopback.wait(0.2)


@pytest.mark.parametrize(
    ("address", "error", "text"),
    [
        ("http://127.0.0.1/?error=access_denied&state=s", NotAuthorised, "access_denied"),
        ("http://127.0.0.1/?state=s", UsageProblem, "holds no code= part"),
    ],
)
def test_a_pasted_address_without_a_code_says_why(
    address: str, error: type[Exception], text: str
) -> None:
    """A refused consent names the provider's error; a truncated paste asks for all of it."""
    with pytest.raises(error, match=text):
        _code_in(address)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("invalid_grant", SignInInvalid),
        ("interaction_required", SignInInvalid),
        ("authorization_declined", SignInInvalid),
        ("temporarily_unavailable", TokenEndpointUnavailable),
        ("invalid_client", AppRefused),
        ("unauthorized_client", AppRefused),
    ],
)
def test_a_providers_error_is_sorted_by_what_it_means_for_the_profile(
    error: str, kind: type[Exception]
) -> None:
    """The grant gone, the provider unwell, or the app refused: three answers, three actions."""
    assert isinstance(_error_of(APP, error, "description"), kind)


def test_microsofts_error_text_keeps_the_reason_and_drops_the_trace_ids() -> None:
    """AADSTS code and sentence stay; the trace and correlation ids are noise for a person."""
    refused = _microsoft_error(
        APP,
        {
            "error": "invalid_grant",
            "error_description": "AADSTS50173: The provided grant has expired due to it being"
            " revoked.\r\nTrace ID: 0b1c Correlation ID: 9f8e Timestamp: 2026-12-06 09:00:00Z",
        },
    )
    assert isinstance(refused, SignInInvalid)
    assert str(refused).endswith(
        "(invalid_grant: AADSTS50173: The provided grant has expired due to it being revoked.)"
    )


def test_who_consented_is_read_from_the_id_token_and_a_bad_one_is_no_one() -> None:
    """The e-mail claim of the token endpoint's ID token; anything unreadable gives None."""
    token = jwt.encode({"email": "jan.kowalski@gmail.com"}, "k" * 32, algorithm="HS256")
    assert "jan.kowalski@gmail.com" == _email_in(token)
    assert _email_in("nie-jwt") is None
    assert _email_in(None) is None


def test_a_certificate_credential_needs_the_key_and_the_certificate() -> None:
    """The stored form names the key and the certificate's SHA-1 thumbprint (msal's x5t);
    a file with the certificate alone is refused."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailworker-app")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )

    stored = certificate_credential(key_pem + certificate_pem)

    assert certificate.fingerprint(hashes.SHA1()).hex() in stored  # noqa: S303
    with pytest.raises(ValueError, match="private key"):
        certificate_credential(certificate_pem)


def test_oauth_app_refuses_a_profile_without_oauth() -> None:
    """A password profile has no app: asking for one is a programming error, said plainly."""
    profile = Profile(
        id=1, name="wp", enabled=True, from_address="jan@wp.pl", display_name="",
        reply_to=None, description="", server_type="smtp", host="smtp.wp.pl", port=465,
        encryption="ssl", auth_method="login", login="jan", password_encrypted=None,
        verify_tls=True, ca_bundle=None, daily_cap=None, max_connections=2,
        timeout_seconds=30, is_default=True, preset="wp",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"does not sign in with OAuth 2\.0"):
        OAuthApp.of(profile)


def test_the_listener_serves_one_browser_at_a_time_without_blocking_the_command() -> None:
    """The listener runs in its own thread: the command's wait returns as the request lands."""
    with _Loopback(0) as loopback:
        timer = threading.Timer(
            0.2, lambda: requests.get(loopback.redirect_uri + "?code=abc", timeout=5)
        )
        timer.start()
        assert "abc" == _code_in(loopback.wait(5))
        timer.join()


@pytest.mark.parametrize("key", ['{"type": "service_account"}', "nie json", "[]"])
def test_a_service_account_key_that_cannot_be_used_is_the_apps_problem(key: str) -> None:
    """A stored key changed or cut short: the profile pauses with a clear reason instead of
    its messages spending their attempts on an error nobody can fix by waiting."""
    service_account = dataclasses.replace(APP, provider="google", flow="service_account")
    with pytest.raises(AppRefused, match="service-account key of profile biuro is not usable"):
        renew(service_account, credential=key, refresh_token=None)
