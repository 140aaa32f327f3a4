"""The OAuth test server serves msal, google-auth and google-auth-oauthlib as the providers do,
called exactly as the product calls them; and the SMTP test server's XOAUTH2 checks its tokens."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import urllib.parse
from typing import Any

import aiosmtplib
import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import google.oauth2.service_account
import jwt
import msal  # type: ignore[import-untyped]
import oauthlib.oauth2  # type: ignore[import-untyped]
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google_auth_oauthlib.flow import Flow  # type: ignore[import-untyped]

from tests.kit.oauth_server import (
    GOOGLE_MAIL_SCOPE,
    MICROSOFT_APP_SCOPE,
    MICROSOFT_SMTP_SCOPE,
    OAuthTestServer,
)
from tests.kit.smtp_fixtures import SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer, smtp_client

PUBLIC_APP = "11111111-2222-3333-4444-555555555555"
DAEMON_APP = "66666666-7777-8888-9999-000000000000"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # app-only needs a tenant: msal warns otherwise
DAEMON_SECRET = "Daemon~Secret.0123456789abcdef"
ANNA = "anna@contoso.test"
BOX = "orders@contoso.test"
GOOGLE_APP = "123456789012-abc.apps.googleusercontent.test"
GOOGLE_SECRET = "GOCSPX-test-secret-0123456789"
JAN = "jan@gmail.test"
GOOGLE_SCOPES = ["openid", "https://www.googleapis.com/auth/userinfo.email", GOOGLE_MAIL_SCOPE]
SERVICE_ACCOUNT = "sender@mail-outbox.iam.gserviceaccount.test"
CORP_BOX = "jan@corp.test"


# --- Helpers: the product's calls -------------------------------------------------------------


def public_app(server: OAuthTestServer, tenant: str = "organizations") -> Any:
    return msal.PublicClientApplication(
        PUBLIC_APP,
        authority=server.microsoft_authority(tenant),
        instance_discovery=False,
        verify=server.ca_bundle,
    )


def daemon_app(server: OAuthTestServer, credential: Any = DAEMON_SECRET) -> Any:
    return msal.ConfidentialClientApplication(
        DAEMON_APP,
        client_credential=credential,
        authority=server.microsoft_authority(TENANT),
        instance_discovery=False,
        verify=server.ca_bundle,
    )


def device_code_sign_in(server: OAuthTestServer, user: str = ANNA) -> dict[str, Any]:
    """The device code flow with the person approving before the first poll (no waiting)."""
    app = public_app(server)
    flow = app.initiate_device_flow(scopes=[MICROSOFT_SMTP_SCOPE])
    server.approve_device_code(flow["user_code"], user=user)
    result: dict[str, Any] = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result.get("error_description")
    return result


def session(server: OAuthTestServer) -> requests.Session:
    verified = requests.Session()
    verified.verify = server.ca_bundle
    return verified


def google_flow(server: OAuthTestServer, port: int = 8765) -> Any:
    flow = Flow.from_client_config(
        {
            "installed": {
                "client_id": GOOGLE_APP,
                "client_secret": GOOGLE_SECRET,
                "auth_uri": server.google_auth_url,
                "token_uri": server.google_token_url,
                "redirect_uris": ["http://127.0.0.1"],
            }
        },
        scopes=GOOGLE_SCOPES,
        redirect_uri=f"http://127.0.0.1:{port}/",
        autogenerate_code_verifier=True,
    )
    flow.oauth2session.verify = server.ca_bundle
    return flow


def browse(server: OAuthTestServer, url: str) -> dict[str, str]:
    """The browser: follow the authorisation URL, return the redirect's query parameters."""
    with session(server) as browser:
        response = browser.get(url, allow_redirects=False, timeout=5)
    assert 302 == response.status_code, response.text
    location = response.headers["Location"]
    assert location.startswith("http://127.0.0.1:")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def google_sign_in(server: OAuthTestServer, user: str = JAN) -> dict[str, Any]:
    server.sign_in_as(user)
    flow = google_flow(server)
    url, state = flow.authorization_url(access_type="offline", prompt="consent")
    redirect = browse(server, url)
    assert state == redirect["state"]
    token: dict[str, Any] = flow.fetch_token(code=redirect["code"])
    return token


def google_refresh(server: OAuthTestServer, refresh_token: str) -> Any:
    credentials = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=refresh_token,
        token_uri=server.google_token_url,
        client_id=GOOGLE_APP,
        client_secret=GOOGLE_SECRET,
        scopes=GOOGLE_SCOPES,
    )
    with session(server) as http:
        credentials.refresh(google.auth.transport.requests.Request(http))  # type: ignore[no-untyped-call]
    return credentials


def service_account_token(
    server: OAuthTestServer, info: dict[str, str], subject: str | None
) -> str:
    credentials = google.oauth2.service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        info, scopes=[GOOGLE_MAIL_SCOPE], subject=subject
    )
    with session(server) as http:
        credentials.refresh(google.auth.transport.requests.Request(http))
    return str(credentials.token)


def certificate() -> tuple[str, str]:
    """A self-signed certificate and its unencrypted private key, in PEM, as Entra takes them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail-outbox-daemon")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def check(server: OAuthTestServer, token: str, login: str, scope: str) -> str | None:
    """The reason a token fails for login at SMTP, or None when it is good."""
    result = server.check_access_token(token, login=login, smtp_scope=scope)
    assert result.valid == (result.reason is None)
    return result.reason


@pytest.fixture
def ms(oauth_server: OAuthTestServer) -> OAuthTestServer:
    """The server with Microsoft's public app and a daemon app allowed to send as BOX."""
    oauth_server.register_public_client(PUBLIC_APP)
    oauth_server.register_confidential_client(DAEMON_APP, secret=DAEMON_SECRET, mailboxes=[BOX])
    return oauth_server


@pytest.fixture
def google_server(
    oauth_server: OAuthTestServer, monkeypatch: pytest.MonkeyPatch
) -> OAuthTestServer:
    """The server with a Google desktop client; oauthlib relaxed about the scope's order, as
    the product sets it (Google answers its own order, and openid's expansion)."""
    monkeypatch.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    oauth_server.register_google_client(GOOGLE_APP, GOOGLE_SECRET)
    return oauth_server


# --- Microsoft: device code -------------------------------------------------------------------


def test_device_code_flow_approved_from_another_thread(ms: OAuthTestServer) -> None:
    """msal polls while the code is pending (authorization_pending); once the person approves in
    another thread it gets an access token for her with SMTP.Send, a refresh token, and the
    claims msal keeps."""
    app = public_app(ms)
    flow = app.initiate_device_flow(scopes=[MICROSOFT_SMTP_SCOPE])
    assert flow["message"] == (
        f"To sign in, use a web browser to open the page {ms.base_url}/devicelogin"
        f" and enter the code {flow['user_code']} to authenticate."
    )

    def person() -> None:
        code = ms.wait_for_device_code(timeout=5)
        ms.wait_for_token_request(lambda r: r.error == "authorization_pending", timeout=5)
        ms.approve_device_code(code, user=ANNA)

    browser = threading.Thread(target=person)
    browser.start()
    result = app.acquire_token_by_device_flow(flow)
    browser.join()
    assert "Bearer" == result["token_type"]
    assert ANNA == result["id_token_claims"]["preferred_username"]
    assert PUBLIC_APP == result["id_token_claims"]["aud"]
    assert result["refresh_token"]
    assert check(ms, result["access_token"], ANNA, MICROSOFT_SMTP_SCOPE) is None
    [account] = app.get_accounts()
    assert ANNA == account["username"]
    *pending, last = ms.token_requests
    assert {"authorization_pending"} == {request.error for request in pending}
    assert ("urn:ietf:params:oauth:grant-type:device_code", ANNA, None) == (
        last.grant_type,
        last.user,
        last.error,
    )


@pytest.mark.parametrize(
    ("decide", "error"),
    [
        (OAuthTestServer.deny_device_code, "authorization_declined"),
        (OAuthTestServer.expire_device_code, "expired_token"),
    ],
)
def test_device_code_declined_or_expired(ms: OAuthTestServer, decide: Any, error: str) -> None:
    """A declined or expired code ends msal's polling with Microsoft's error."""
    app = public_app(ms)
    flow = app.initiate_device_flow(scopes=[MICROSOFT_SMTP_SCOPE])
    decide(ms, flow["user_code"])
    result = app.acquire_token_by_device_flow(flow)
    assert error == result["error"]
    assert "access_token" not in result


def test_unknown_client_is_refused_as_microsoft_words_it(oauth_server: OAuthTestServer) -> None:
    """A client id the directory does not know: unauthorized_client, AADSTS700016."""
    flow = public_app(oauth_server).initiate_device_flow(scopes=[MICROSOFT_SMTP_SCOPE])
    assert "unauthorized_client" == flow["error"]
    assert flow["error_description"].startswith(
        f"AADSTS700016: Application with identifier '{PUBLIC_APP}'"
    )
    assert [700016] == flow["error_codes"]


# --- Microsoft: refresh -----------------------------------------------------------------------


def test_refresh_with_strict_rotation_ends_the_used_token(ms: OAuthTestServer) -> None:
    """With rotation each refresh returns a new refresh token and the used one is refused
    (invalid_grant); the new one works. Without rotation the old one would keep working."""
    first = device_code_sign_in(ms)["refresh_token"]
    ms.rotate_refresh_tokens = True
    app = public_app(ms)
    second = app.acquire_token_by_refresh_token(first, scopes=[MICROSOFT_SMTP_SCOPE])
    assert second["refresh_token"] != first
    assert check(ms, second["access_token"], ANNA, MICROSOFT_SMTP_SCOPE) is None
    again = public_app(ms).acquire_token_by_refresh_token(first, scopes=[MICROSOFT_SMTP_SCOPE])
    assert "invalid_grant" == again["error"]
    assert again["error_description"].startswith("AADSTS70000:")
    third = public_app(ms).acquire_token_by_refresh_token(
        second["refresh_token"], scopes=[MICROSOFT_SMTP_SCOPE]
    )
    assert "access_token" in third


def test_refresh_without_rotation_keeps_the_old_token_working(ms: OAuthTestServer) -> None:
    """Microsoft's default: a new refresh token each time, and the old one still works."""
    first = device_code_sign_in(ms)["refresh_token"]
    second = public_app(ms).acquire_token_by_refresh_token(first, scopes=[MICROSOFT_SMTP_SCOPE])
    again = public_app(ms).acquire_token_by_refresh_token(first, scopes=[MICROSOFT_SMTP_SCOPE])
    assert second["refresh_token"] != first
    assert "access_token" in again


def test_revocation_ends_refresh_and_access_tokens(ms: OAuthTestServer) -> None:
    """After revoke(user) her refresh token gets invalid_grant AADSTS50173 and her access token
    is refused as revoked; another user's tokens are untouched."""
    anna = device_code_sign_in(ms)
    other = device_code_sign_in(ms, "ben@contoso.test")
    ms.revoke(ANNA)
    result = public_app(ms).acquire_token_by_refresh_token(
        anna["refresh_token"], scopes=[MICROSOFT_SMTP_SCOPE]
    )
    assert "invalid_grant" == result["error"]
    assert result["error_description"].startswith("AADSTS50173: The provided grant has expired")
    assert "revoked" == check(ms, anna["access_token"], ANNA, MICROSOFT_SMTP_SCOPE)
    assert check(ms, other["access_token"], "ben@contoso.test", MICROSOFT_SMTP_SCOPE) is None
    assert "access_token" in device_code_sign_in(ms)  # signing in again works


def test_expired_refresh_token(ms: OAuthTestServer) -> None:
    """A refresh token past refresh_token_lifetime: invalid_grant AADSTS700082."""
    ms.refresh_token_lifetime = 0
    token = device_code_sign_in(ms)["refresh_token"]
    result = public_app(ms).acquire_token_by_refresh_token(token, scopes=[MICROSOFT_SMTP_SCOPE])
    assert "invalid_grant" == result["error"]
    assert result["error_description"].startswith("AADSTS700082: The refresh token has expired")


# --- Microsoft: client credentials ------------------------------------------------------------


def test_client_credentials_with_secret(ms: OAuthTestServer) -> None:
    """An app-only token for the daemon signs in as the mailboxes it was allowed, no other."""
    result = daemon_app(ms).acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])
    token = result["access_token"]
    assert check(ms, token, BOX, MICROSOFT_APP_SCOPE) is None
    assert "wrong user" == check(ms, token, ANNA, MICROSOFT_APP_SCOPE)
    assert "scope" == check(ms, token, BOX, GOOGLE_MAIL_SCOPE)
    [request] = ms.token_requests
    assert ("client_credentials", DAEMON_APP, None) == (
        request.grant_type,
        request.client_id,
        request.error,
    )


def test_client_credentials_with_a_wrong_secret(ms: OAuthTestServer) -> None:
    """A wrong secret: invalid_client, AADSTS7000215."""
    result = daemon_app(ms, "not-the-secret-at-all").acquire_token_for_client(
        scopes=[MICROSOFT_APP_SCOPE]
    )
    assert "invalid_client" == result["error"]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


@pytest.mark.parametrize("form", ["thumbprint", "public_certificate"], ids=["RS256", "PS256"])
def test_client_credentials_with_a_certificate(oauth_server: OAuthTestServer, form: str) -> None:
    """msal signs the client assertion with the private key: RS256 with a SHA-1 thumbprint,
    PS256 with the certificate itself; the server verifies it with the registered certificate,
    and refuses an assertion signed by a certificate it does not know (AADSTS700027)."""
    cert_pem, key_pem = certificate()
    oauth_server.register_confidential_client(DAEMON_APP, certificate_pem=cert_pem, mailboxes=[BOX])
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    credential: dict[str, str] = {"private_key": key_pem}
    if form == "thumbprint":
        credential["thumbprint"] = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - Entra's
    else:
        credential["public_certificate"] = cert_pem
    result = daemon_app(oauth_server, credential).acquire_token_for_client(
        scopes=[MICROSOFT_APP_SCOPE]
    )
    assert check(oauth_server, result["access_token"], BOX, MICROSOFT_APP_SCOPE) is None
    other_cert, other_key = certificate()
    stranger = {"private_key": other_key, "public_certificate": other_cert}
    refused = daemon_app(oauth_server, stranger).acquire_token_for_client(
        scopes=[MICROSOFT_APP_SCOPE]
    )
    assert "invalid_client" == refused["error"]
    assert refused["error_description"].startswith("AADSTS700027:")


# --- Google: the authorisation code flow ------------------------------------------------------


def test_google_code_flow_with_pkce(google_server: OAuthTestServer) -> None:
    """The browser is redirected to the loopback address with a code; fetch_token (PKCE, client
    secret by HTTP Basic) returns an access token for the signed-in user, a refresh token and an
    ID token naming her; the code cannot be used twice."""
    google_server.sign_in_as(JAN)
    flow = google_flow(google_server)
    url, state = flow.authorization_url(access_type="offline", prompt="consent")
    redirect = browse(google_server, url)
    assert state == redirect["state"]
    token = flow.fetch_token(code=redirect["code"])
    assert check(google_server, token["access_token"], JAN, GOOGLE_MAIL_SCOPE) is None
    assert token["refresh_token"].startswith("1//")
    claims = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert (JAN, GOOGLE_APP) == (claims["email"], claims["aud"])
    with pytest.raises(oauthlib.oauth2.InvalidGrantError):
        flow.fetch_token(code=redirect["code"])


def test_google_code_needs_its_own_code_verifier(google_server: OAuthTestServer) -> None:
    """A code redeemed by another flow (another code verifier) is refused: invalid_grant."""
    google_server.sign_in_as(JAN)
    url, _ = google_flow(google_server).authorization_url(access_type="offline")
    code = browse(google_server, url)["code"]
    thief = google_flow(google_server)
    thief.authorization_url()  # makes its own code verifier
    with pytest.raises(oauthlib.oauth2.InvalidGrantError):
        thief.fetch_token(code=code)


def test_google_consent_refused(google_server: OAuthTestServer) -> None:
    """Refused consent: the redirect carries error=access_denied and the state, no code."""
    google_server.sign_in_as(JAN)
    google_server.refuse_consent()
    url, state = google_flow(google_server).authorization_url(access_type="offline")
    assert {"error": "access_denied", "state": state} == browse(google_server, url)


# --- Google: refresh and service accounts -----------------------------------------------------


def test_google_refresh_returns_no_new_refresh_token(google_server: OAuthTestServer) -> None:
    """google-auth's refresh gets a new access token and keeps its refresh token, as Google
    returns none; with strict rotation it gets a new one and the old one is refused."""
    refresh_token = google_sign_in(google_server)["refresh_token"]
    credentials = google_refresh(google_server, refresh_token)
    assert check(google_server, credentials.token, JAN, GOOGLE_MAIL_SCOPE) is None
    assert refresh_token == credentials.refresh_token
    google_server.rotate_refresh_tokens = True
    rotated = google_refresh(google_server, refresh_token)
    assert rotated.refresh_token != refresh_token
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        google_refresh(google_server, refresh_token)


def test_google_revocation(google_server: OAuthTestServer) -> None:
    """After revoke(user) the refresh fails with Google's words and the access token is revoked."""
    token = google_sign_in(google_server)
    google_server.revoke(JAN)
    with pytest.raises(google.auth.exceptions.RefreshError) as caught:
        google_refresh(google_server, token["refresh_token"])
    assert "invalid_grant: Token has been expired or revoked." in str(caught.value)
    assert "revoked" == check(google_server, token["access_token"], JAN, GOOGLE_MAIL_SCOPE)


def test_service_account_with_domain_wide_delegation(oauth_server: OAuthTestServer) -> None:
    """A service account's signed assertion gets a token for a mailbox delegated to it; for any
    other subject Google's unauthorized_client; without a subject a token for the service
    account itself, which cannot sign in as the mailbox."""
    info = oauth_server.register_service_account(SERVICE_ACCOUNT, delegated_mailboxes=[CORP_BOX])
    assert {
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "token_uri",
    } <= set(info)
    token = service_account_token(oauth_server, info, CORP_BOX)
    assert check(oauth_server, token, CORP_BOX, GOOGLE_MAIL_SCOPE) is None
    with pytest.raises(google.auth.exceptions.RefreshError) as caught:
        service_account_token(oauth_server, info, "boss@corp.test")
    assert "unauthorized_client: Client is unauthorized to retrieve access tokens" in str(
        caught.value
    )
    own = service_account_token(oauth_server, info, None)
    assert "wrong user" == check(oauth_server, own, CORP_BOX, GOOGLE_MAIL_SCOPE)


def test_service_account_key_of_another_account_is_refused(oauth_server: OAuthTestServer) -> None:
    """An assertion signed with another key than the registered one: invalid_grant."""
    info = oauth_server.register_service_account(SERVICE_ACCOUNT, delegated_mailboxes=[CORP_BOX])
    other = oauth_server.register_service_account("other@x.iam.gserviceaccount.test")
    forged = info | {"private_key": other["private_key"]}
    with pytest.raises(google.auth.exceptions.RefreshError, match="Invalid JWT Signature"):
        service_account_token(oauth_server, forged, CORP_BOX)


# --- Outages and expiry -----------------------------------------------------------------------


def test_outage_503(ms: OAuthTestServer) -> None:
    """During a 503 outage msal raises MsalServiceError (it returns no error dict for a 5xx).
    It then replays that 5xx from its own cache for Retry-After seconds, so the same app's
    retry never reaches the server; a new app's request, after the outage, gets a token."""
    app = daemon_app(ms)
    ms.outage("503", retry_after=60)
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        app.acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])
    ms.end_outage()
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        app.acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])
    assert ["503"] == [request.error for request in ms.token_requests]
    assert "access_token" in daemon_app(ms).acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])


def test_google_auth_retries_a_503_itself(google_server: OAuthTestServer) -> None:
    """google-auth retries a 503 at the token endpoint (after about a second): one failed
    request, then success."""
    refresh_token = google_sign_in(google_server)["refresh_token"]
    google_server.outage("503", times=1)
    credentials = google_refresh(google_server, refresh_token)
    assert credentials.token
    refreshes = [r.error for r in google_server.token_requests if r.grant_type == "refresh_token"]
    assert ["503", None] == refreshes


def test_outage_reset(ms: OAuthTestServer, google_server: OAuthTestServer) -> None:
    """A reset outage closes the connection without an answer: msal raises requests'
    ConnectionError, google-auth its TransportError."""
    app = daemon_app(ms)  # discovery before the outage
    info = ms.register_service_account(SERVICE_ACCOUNT, delegated_mailboxes=[CORP_BOX])
    ms.outage("reset")
    with pytest.raises(requests.ConnectionError):
        app.acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])
    with pytest.raises(google.auth.exceptions.TransportError):
        service_account_token(ms, info, CORP_BOX)
    assert ["reset", "reset"] == [request.error for request in ms.token_requests]


def test_access_token_expiry(ms: OAuthTestServer) -> None:
    """access_token_lifetime sets expires_in of new tokens; expire_access_tokens() ends all
    tokens issued so far, not later ones."""
    ms.access_token_lifetime = 2
    result = daemon_app(ms).acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])
    assert 2 == result["expires_in"]
    ms.expire_access_tokens()
    assert "expired" == check(ms, result["access_token"], BOX, MICROSOFT_APP_SCOPE)
    fresh = daemon_app(ms).acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])
    assert check(ms, fresh["access_token"], BOX, MICROSOFT_APP_SCOPE) is None


def test_an_unknown_token_is_unknown(oauth_server: OAuthTestServer) -> None:
    """A token this server never issued is refused as unknown."""
    assert "unknown" == check(oauth_server, "EwB-made-up", ANNA, MICROSOFT_SMTP_SCOPE)


# --- XOAUTH2 at the SMTP test server ----------------------------------------------------------

MICROSOFT_REFUSAL = "5.7.3 Authentication unsuccessful ["
GOOGLE_REFUSAL = (
    "5.7.8 Username and Password not accepted. For more information, go to\n"
    "5.7.8  https://support.google.com/mail/?p=BadCredentials"
)


@pytest.fixture
def outlook(ms: OAuthTestServer, smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    return smtp_server_factory(tls="starttls", oauth=ms, oauth_style="microsoft")


@pytest.fixture
def gmail(oauth_server: OAuthTestServer, smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    return smtp_server_factory(tls="implicit", oauth=oauth_server, oauth_style="google")


async def test_xoauth2_microsoft_accepts_a_valid_token(
    ms: OAuthTestServer, outlook: SmtpTestServer
) -> None:
    """Outlook-style: AUTH XOAUTH2 is offered after STARTTLS; her delegated token and the
    daemon's app-only token for its mailbox both sign in, and the message is recorded."""
    delegated = device_code_sign_in(ms)["access_token"]
    app_only = daemon_app(ms).acquire_token_for_client(scopes=[MICROSOFT_APP_SCOPE])
    for login, token in [(ANNA, delegated), (BOX, app_only["access_token"])]:
        async with smtp_client(outlook) as client:
            await client.ehlo()  # aiosmtplib forgets the extensions after STARTTLS
            assert "xoauth2" in client.server_auth_methods
            response = await client.auth_xoauth2(login, token)
            assert 235 == response.code
            await client.sendmail(login, ["a@example.org"], b"Subject: hi\r\n\r\nHi.\r\n")
    assert [(ANNA, True), (BOX, True)] == [
        (attempt.login, attempt.success)
        for attempt in outlook.auth_attempts
        if attempt.mechanism == "XOAUTH2"
    ]
    assert [ANNA, BOX] == [message.login for message in outlook.messages]


@pytest.mark.parametrize("case", ["expired", "revoked", "another user's"])
async def test_xoauth2_microsoft_refusals(
    ms: OAuthTestServer, outlook: SmtpTestServer, case: str
) -> None:
    """An expired, revoked or another user's token: 535 5.7.3 Authentication unsuccessful."""
    token = device_code_sign_in(ms)["access_token"]
    login = ANNA
    if case == "expired":
        ms.expire_access_tokens()
    elif case == "revoked":
        ms.revoke(ANNA)
    else:
        login = "ben@contoso.test"
    async with smtp_client(outlook) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await client.auth_xoauth2(login, token)
    assert 535 == caught.value.code
    assert caught.value.message.startswith(MICROSOFT_REFUSAL)
    [attempt] = outlook.auth_attempts
    assert ("XOAUTH2", login, False) == (attempt.mechanism, attempt.login, attempt.success)


async def test_xoauth2_google_accepts_a_delegated_service_account_token(
    oauth_server: OAuthTestServer, gmail: SmtpTestServer
) -> None:
    """Gmail-style over implicit TLS: a token of the mailbox signs in as it."""
    info = oauth_server.register_service_account(SERVICE_ACCOUNT, delegated_mailboxes=[CORP_BOX])
    token = service_account_token(oauth_server, info, CORP_BOX)
    async with smtp_client(gmail) as client:
        assert 235 == (await client.auth_xoauth2(CORP_BOX, token)).code
    assert [("XOAUTH2", CORP_BOX, True)] == [
        (a.mechanism, a.login, a.success) for a in gmail.auth_attempts
    ]


@pytest.mark.parametrize(("case", "status"), [("expired", "401"), ("another user's", "400")])
async def test_xoauth2_google_refusals(
    oauth_server: OAuthTestServer, gmail: SmtpTestServer, case: str, status: str
) -> None:
    """Gmail first sends a 334 challenge of JSON (status 401 for a bad token, 400 otherwise);
    after the client's empty line, its two-line 535 5.7.8."""
    info = oauth_server.register_service_account(SERVICE_ACCOUNT, delegated_mailboxes=[CORP_BOX])
    token = service_account_token(oauth_server, info, CORP_BOX)
    login = CORP_BOX if case == "expired" else "boss@corp.test"
    if case == "expired":
        oauth_server.expire_access_tokens()
    async with smtp_client(gmail) as client:
        await client.ehlo()
        encoded = aiosmtplib.auth.auth_xoauth2_encode(login, token)
        challenge = await client.execute_command(b"AUTH", b"XOAUTH2", encoded)
        final = await client.execute_command(b"")
    assert 334 == challenge.code
    assert {"status": status, "schemes": "Bearer", "scope": GOOGLE_MAIL_SCOPE} == json.loads(
        base64.b64decode(challenge.message)
    )
    assert (535, GOOGLE_REFUSAL) == (final.code, final.message)
    async with smtp_client(gmail) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await client.auth_xoauth2(login, token)  # answers the 334 with the empty line
    assert (535, GOOGLE_REFUSAL) == (caught.value.code, caught.value.message)


async def test_xoauth2_alongside_passwords_and_scripted_auth_faults(
    oauth_server: OAuthTestServer, smtp_server_factory: SmtpServerFactory
) -> None:
    """With accounts too, PLAIN and LOGIN stay offered beside XOAUTH2, and AUTH rules of the
    script apply to XOAUTH2 like to any mechanism."""
    server = smtp_server_factory(
        tls="implicit", accounts={"me@x.test": "pw-12345678"}, oauth=oauth_server
    )
    server.script.once("AUTH", reply="454 4.7.0 Too many login attempts, please try again later.")
    async with smtp_client(server) as client:
        await client.ehlo()
        assert {"login", "plain", "xoauth2"} == set(client.server_auth_methods)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await client.auth_xoauth2(ANNA, "EwB-never-issued")
        assert 454 == caught.value.code
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.auth_xoauth2(ANNA, "EwB-never-issued")
        assert 535 == refused.value.code
        await client.login("me@x.test", "pw-12345678")
