"""A local OAuth 2.0 authorisation server over HTTPS that speaks like Microsoft's and Google's.

msal, google-auth and google-auth-oauthlib, called as the product calls them, work against it
unchanged: only the URLs and the CA bundle differ from production. It runs in a thread of its
own (``http.server``, one thread per connection) on ``127.0.0.1``, port 0, with a certificate
from the session's ``SmtpTestCA``, so the test process and worker subprocesses reach it alike::

    server = OAuthTestServer(ca=smtp_ca).start()      # the oauth_server fixture does this
    server.base_url                                   # https://127.0.0.1:PORT
    server.ca_bundle                                  # the PEM file clients verify it with

Microsoft (the authority is ``server.microsoft_authority(tenant)``, any tenant string)::

    server.register_public_client("desktop-app")
    app = msal.PublicClientApplication("desktop-app", authority=server.microsoft_authority(),
                                       instance_discovery=False, verify=server.ca_bundle)
    flow = app.initiate_device_flow(scopes=["https://outlook.office.com/SMTP.Send"])
    # another thread, playing the person at the browser:
    server.approve_device_code(server.wait_for_device_code(), user="anna@contoso.test")
    result = app.acquire_token_by_device_flow(flow)   # polls every `device_code_interval` s
    server.deny_device_code(code)                     # authorization_declined instead
    server.expire_device_code(code)                   # expired_token instead

    server.register_confidential_client("daemon", secret="...", mailboxes=["box@contoso.test"])
    server.register_confidential_client("daemon2", certificate_pem=CERT, mailboxes=[...])
    # ConfidentialClientApplication(..., authority=server.microsoft_authority(TENANT_GUID), ...)
    #     .acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])

Google (``server.google_auth_url``, ``server.google_token_url``)::

    server.register_google_client("123.apps.googleusercontent.test", "GOCSPX-...")
    server.sign_in_as("jan@gmail.test")   # the browser's user; server.refuse_consent() instead
    # GET the Flow's authorization_url: 302 to the loopback redirect_uri with code and state
    key_file = server.register_service_account("sender@proj.iam.gserviceaccount.test",
                                               delegated_mailboxes=["jan@corp.test"])

Controls, all thread-safe and usable while clients talk to the server::

    server.access_token_lifetime = 2        # seconds, for tokens issued from now on
    server.refresh_token_lifetime = 0       # likewise (None: until revoked)
    server.expire_access_tokens()           # every access token issued so far
    server.revoke("anna@contoso.test")      # her refresh and access tokens (or a mailbox's)
    server.rotate_refresh_tokens = True     # a used refresh token stops working (both styles)
    server.outage("503", retry_after=1)     # or "reset": close without an answer; times=N
    server.end_outage()

Observations::

    server.token_requests   # TokenRequest(provider, grant_type, client_id, user, time, error)
    server.wait_for_token_request(lambda r: r.error == "authorization_pending", timeout=5)
    server.check_access_token(token, login="anna@contoso.test", smtp_scope=SCOPE)  # TokenCheck
    server.errors           # tracebacks of the server's own bugs (the fixture fails on them)

Every secret the server issues or is given (access and refresh tokens, authorisation codes,
client secrets, service-account private keys) passes through :meth:`OAuthTestServer.note_secret`,
which ``tests/kit/secret_scan.py`` watches.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import http.server
import json
import math
import re
import secrets
import socket
import ssl
import string
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from tests.kit.smtp_server import HOST, SmtpTestCA

__all__ = [
    "CONSUMERS_TENANT_ID",
    "GOOGLE_MAIL_SCOPE",
    "MICROSOFT_APP_SCOPE",
    "MICROSOFT_SMTP_SCOPE",
    "CheckReason",
    "OAuthTestServer",
    "OutageMode",
    "Provider",
    "TokenCheck",
    "TokenRequest",
]

OutageMode = Literal["503", "reset"]
Provider = Literal["microsoft", "google"]
CheckReason = Literal["expired", "revoked", "unknown", "wrong user", "scope"]

MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
# Microsoft's tenant of personal accounts (Outlook.com): the tid of every consumer token.
CONSUMERS_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})  # msal adds them itself
GOOGLE_ISSUER = "https://accounts.google.com"
# google-auth signs a service account's assertion for Google's own token URL whatever token_uri
# says, and Google accepts its older token URLs too; so does this server, besides its own.
GOOGLE_TOKEN_AUDIENCES = (
    "https://oauth2.googleapis.com/token",
    "https://accounts.google.com/o/oauth2/token",
    "https://www.googleapis.com/oauth2/v4/token",
)
GOOGLE_EXPIRED_OR_REVOKED = "Token has been expired or revoked."
GOOGLE_UNAUTHORIZED_CLIENT = (
    "Client is unauthorized to retrieve access tokens using this method, or client not"
    " authorized for any of the scopes requested."
)
AUTH_CODE_LIFETIME_SECONDS = 600.0
START_TIMEOUT_SECONDS = 10.0
JWT_LEEWAY_SECONDS = 60
_USER_CODE_ALPHABET = string.ascii_uppercase + string.digits
_GUID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", re.IGNORECASE)


# --- Records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One request that reached a token endpoint, answered or not."""

    provider: Provider
    grant_type: str
    client_id: str | None
    user: str | None  # the person or mailbox the grant speaks for, once known
    time: float  # time.time() when it arrived
    error: str | None  # the OAuth error answered; "reset" for a dropped one; None: tokens issued


@dataclass(frozen=True)
class TokenCheck:
    """What the server says of an access token presented at SMTP."""

    valid: bool
    reason: CheckReason | None  # None when valid
    user: str | None  # whom the token speaks for (None for an unknown token or a Microsoft app)


@dataclass
class _Client:
    """A registered application: Microsoft public or confidential, or a Google OAuth client."""

    client_id: str
    provider: Provider
    secret: str | None = dataclasses.field(default=None, repr=False)
    certificate: x509.Certificate | None = None
    mailboxes: frozenset[str] = frozenset()  # Microsoft app-only: who it may send as

    @property
    def confidential(self) -> bool:
        return self.secret is not None or self.certificate is not None


@dataclass
class _ServiceAccount:
    client_email: str
    client_id: str
    key_id: str
    public_key: rsa.RSAPublicKey
    delegated: frozenset[str]


@dataclass
class _AccessToken:
    provider: Provider
    client_id: str
    user: str | None  # None: a Microsoft app-only token (it speaks for the app's mailboxes)
    scopes: frozenset[str]
    serial: int
    expires_at: float  # time.monotonic()


@dataclass
class _RefreshToken:
    provider: Provider
    client_id: str
    user: str
    scopes: frozenset[str]
    tenant: str
    serial: int
    issued_at: float  # time.time(), for Microsoft's error texts
    expires_at: float | None  # time.monotonic()
    used: bool = False


@dataclass
class _DeviceCode:
    client_id: str
    user_code: str
    scopes: frozenset[str]
    tenant: str
    expires_at: float
    state: Literal["pending", "approved", "declined", "expired", "redeemed"] = "pending"
    user: str | None = None


@dataclass
class _AuthCode:
    client_id: str
    user: str
    scopes: frozenset[str]
    redirect_uri: str
    challenge: str | None
    challenge_method: str
    offline: bool
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer; None in its place means: close the connection without one."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _json(status: int, body: Mapping[str, Any], **headers: str) -> _Answer:
    return _Answer(status, json.dumps(body).encode(), headers=headers)


def _html(status: int, text: str) -> _Answer:
    return _Answer(status, f"<!doctype html><title>{text}</title><p>{text}".encode(), "text/html")


class _Refusal(Exception):
    """An error answer of a token endpoint, worded as the provider words it."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.error = str(body.get("error"))
        self.answer = _json(status, body)


def _microsoft_error(error: str, code: int, text: str, status: int = 400) -> _Refusal:
    """Entra ID's error body: AADSTS code first, then trace and correlation ids and the time."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation}"
        f" Timestamp: {timestamp}"
    )
    return _Refusal(
        status,
        {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
    )


def _google_error(error: str, description: str, status: int = 400) -> _Refusal:
    return _Refusal(status, {"error": error, "error_description": description})


def _unknown_microsoft_client(client_id: str, tenant: str) -> _Refusal:
    return _microsoft_error(
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'."
        " This can happen if the application has not been installed by the administrator of"
        " the tenant or consented to by any user in the tenant. You may have sent your"
        " authentication request to the wrong tenant.",
    )


# --- Small helpers ----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _scopes(text: str | None) -> frozenset[str]:
    return frozenset((text or "").split())


def _same_user(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.casefold() == b.casefold()


def _guid_for(name: str) -> str:
    """A stable GUID for a name: a user's object id, a domain's tenant id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"oauth-test-server:{name.casefold()}"))


def _tenant_id(tenant: str, user: str) -> str:
    """The tid of a token: the authority's tenant when it is one, else the user's domain's."""
    if _GUID.fullmatch(tenant):
        return tenant.lower()
    if tenant.casefold() == "consumers":
        return CONSUMERS_TENANT_ID
    return _guid_for(user.rpartition("@")[2] or tenant)


def _is_loopback_redirect(uri: str) -> bool:
    """Google's rule for installed apps: http on a loopback address, any port and path."""
    parts = urllib.parse.urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    parts = urllib.parse.urlsplit(uri)
    query = "&".join(filter(None, [parts.query, urllib.parse.urlencode(params)]))
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _thumbprint(header_value: object) -> bytes | None:
    """The bytes of an x5t or x5t#S256 header, in base64url as RFC 7515 says or in padded
    base64 with + and / as msal writes it; Entra ID takes both."""
    if not isinstance(header_value, str):
        return None
    text = header_value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return None


def _s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _pem_fingerprint(pem: str) -> str:
    """One 64-character line from the middle of a PEM body: it is in every copy of the key
    (PEM, JSON-escaped key file, a log of either) and, unlike the first line, random."""
    lines = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    return lines[len(lines) // 2]


@functools.cache
def _signing_key() -> rsa.RSAPrivateKey:
    """The key that signs ID tokens: one per process (made once, as RSA keys take a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY_ID = "oauth-test-server-1"


# --- The HTTP side ----------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    """Accepts on the listening thread, does the TLS handshake in the connection's thread."""

    daemon_threads = True

    def __init__(self, owner: OAuthTestServer, context: ssl.SSLContext) -> None:
        self.owner = owner
        self.context = context
        super().__init__((HOST, 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that does not trust the CA, or went away: its own business
        try:
            _Handler(connection, client_address, self)
        finally:
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner.record_error(traceback.format_exc())


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection. HTTP/1.0: the server closes each connection after its answer, so no
    client keeps a pooled socket that the garbage collector would close with a warning."""

    server: _HTTPServer
    server_version = "OAuthTestServer/1"

    def do_GET(self) -> None:
        self._dispatch("GET", dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        self._dispatch("POST", dict(urllib.parse.parse_qsl(body)))

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``token_requests``, not an access log on stderr."""

    def _dispatch(self, method: str, form: dict[str, str]) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            answer = self.server.owner.answer(method, path, form, self.headers.get("Authorization"))
        except Exception:  # noqa: BLE001 - a kit bug: answer 500, and the fixture fails the test
            self.server.owner.record_error(traceback.format_exc())
            answer = _json(500, {"error": "server_error"})
        if answer is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # no answer, no TLS close_notify
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)


# --- The server -------------------------------------------------------------------------------

_Route = Callable[[re.Match[str], dict[str, str], str | None], "_Answer | None"]


class OAuthTestServer:
    """A Microsoft- and Google-style authorisation server; see the module docstring.

    Keyword arguments:

    - ``ca``: the ``SmtpTestCA`` whose certificate it presents (clients verify ``ca_bundle``).
    - ``device_code_interval``: the polling interval a device code asks for, in whole seconds
      (msal sleeps in whole seconds; Microsoft says 5).
    - ``device_code_lifetime``: seconds until a device code expires (Microsoft: 900).
    - ``access_token_lifetime``: seconds an access token lives (settable later, see below).
    - ``refresh_token_lifetime``: seconds a refresh token lives; None: until revoked (settable).
    - ``rotate_refresh_tokens``: strict rotation, settable later. Off, Microsoft answers every
      refresh with a new refresh token and the old one keeps working, and Google returns none
      (it never rotates). On, both return a new one and the used one stops working.
    """

    def __init__(
        self,
        *,
        ca: SmtpTestCA,
        device_code_interval: int = 1,
        device_code_lifetime: float = 900.0,
        access_token_lifetime: float = 3600.0,
        refresh_token_lifetime: float | None = None,
        rotate_refresh_tokens: bool = False,
    ) -> None:
        self.ca = ca
        self.device_code_interval = max(1, int(device_code_interval))
        self.device_code_lifetime = device_code_lifetime
        self._lock = threading.Condition()
        self._access_token_lifetime = access_token_lifetime
        self._refresh_token_lifetime = refresh_token_lifetime
        self._rotate_refresh_tokens = rotate_refresh_tokens
        self._clients: dict[str, _Client] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._device_codes: dict[str, _DeviceCode] = {}  # by device_code
        self._auth_codes: dict[str, _AuthCode] = {}
        self._revoked: dict[str, int] = {}  # casefolded user -> the last serial it ends
        self._serial = 0
        self._browser_user: str | None = None
        self._refuse_consent = False
        self._outage: tuple[OutageMode, int | None, int | None] | None = None
        self._token_requests: list[TokenRequest] = []
        self._errors: list[str] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern[str], _Route]] = [
            ("GET", re.compile(r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration"),
             self._openid_configuration),
            ("GET", re.compile(r"/(?P<tenant>[^/]+)/discovery/v2\.0/keys"), self._keys),
            ("GET", re.compile(r"/oauth2/v3/certs"), self._keys),
            ("POST", re.compile(r"/(?P<tenant>[^/]+)/oauth2/v2\.0/devicecode"), self._devicecode),
            ("POST", re.compile(r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token"), self._microsoft_token),
            ("GET", re.compile(r"/devicelogin"), self._devicelogin),
            ("GET", re.compile(r"/o/oauth2/auth"), self._google_authorize),
            ("POST", re.compile(r"/token"), self._google_token),
        ]  # fmt: skip

    def __repr__(self) -> str:
        return f"<OAuthTestServer {self.base_url if self._httpd else 'not started'}>"

    # Life cycle

    def start(self) -> OAuthTestServer:
        """Listen and serve in a new thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("this server was already started")
        self._httpd = _HTTPServer(self, self.ca.server_context())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="oauth-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and end the thread; idempotent. Open connections are daemon threads
        that end with their clients (each connection carries one request)."""
        if self._httpd is None or self._thread is None or not self._thread.is_alive():
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(START_TIMEOUT_SECONDS)

    def __enter__(self) -> OAuthTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Where clients go

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``; the certificate names 127.0.0.1 and localhost."""
        return f"https://{HOST}:{self.port}"

    @property
    def ca_bundle(self) -> str:
        """The PEM file of the CA to trust (msal's ``verify=``, a requests session's)."""
        return self.ca.cert_bundle

    def microsoft_authority(self, tenant: str = "organizations") -> str:
        """msal's ``authority=`` for a tenant: organizations, common, consumers, a GUID."""
        return f"{self.base_url}/{tenant}"

    def microsoft_token_url(self, tenant: str = "organizations") -> str:
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    @property
    def google_token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def google_auth_url(self) -> str:
        return f"{self.base_url}/o/oauth2/auth"

    # Registrations

    def note_secret(self, value: str) -> str:
        """Every secret this server issues or is given passes through here, and is returned.

        The door the secret scan (``tests/kit/secret_scan.py``) watches; it does nothing else.
        """
        return value

    def register_public_client(self, client_id: str) -> None:
        """A Microsoft app without a credential (device code flow, refresh)."""
        self._register(_Client(client_id, "microsoft"))

    def register_confidential_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: str | bytes | None = None,
        mailboxes: Iterable[str] = (),
    ) -> None:
        """A Microsoft app with a secret or a certificate, allowed to send as ``mailboxes``
        (Exchange's permission for a service principal) with app-only tokens."""
        if (secret is None) == (certificate_pem is None):
            raise ValueError("give exactly one of secret= and certificate_pem=")
        certificate = None
        if certificate_pem is not None:
            pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
            certificate = x509.load_pem_x509_certificate(pem)
        mailbox_set = frozenset(m.casefold() for m in mailboxes)
        secret = None if secret is None else self.note_secret(secret)
        self._register(_Client(client_id, "microsoft", secret, certificate, mailbox_set))

    def register_google_client(self, client_id: str, secret: str) -> None:
        """A Google OAuth client of the "Desktop app" (installed) type."""
        self._register(_Client(client_id, "google", self.note_secret(secret)))

    def register_service_account(
        self, client_email: str, *, delegated_mailboxes: Iterable[str] = ()
    ) -> dict[str, str]:
        """A Google service account with a new RSA key, allowed domain-wide delegation to
        ``delegated_mailboxes``; returns its complete JSON key file as a dict."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        self.note_secret(_pem_fingerprint(pem))
        account = _ServiceAccount(
            client_email=client_email,
            client_id=str(secrets.randbelow(10**21 - 10**20) + 10**20),
            key_id=secrets.token_hex(20),
            public_key=key.public_key(),
            delegated=frozenset(m.casefold() for m in delegated_mailboxes),
        )
        with self._lock:
            self._service_accounts[client_email] = account
        domain = client_email.partition("@")[2]
        project = domain.split(".")[0] if ".iam." in domain else "mail-outbox-tests"
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": account.key_id,
            "private_key": pem,
            "client_email": client_email,
            "client_id": account.client_id,
            "auth_uri": self.google_auth_url,
            "token_uri": self.google_token_url,
            "auth_provider_x509_cert_url": f"{self.base_url}/oauth2/v1/certs",
            "client_x509_cert_url": f"{self.base_url}/robot/v1/metadata/x509/"
            + urllib.parse.quote(client_email),
            "universe_domain": "googleapis.com",
        }

    def _register(self, client: _Client) -> None:
        with self._lock:
            self._clients[client.client_id] = client

    # Controls

    @property
    def access_token_lifetime(self) -> float:
        """Seconds an access token issued from now on lives."""
        with self._lock:
            return self._access_token_lifetime

    @access_token_lifetime.setter
    def access_token_lifetime(self, seconds: float) -> None:
        with self._lock:
            self._access_token_lifetime = seconds

    @property
    def refresh_token_lifetime(self) -> float | None:
        """Seconds a refresh token issued from now on lives; None: until revoked or used up."""
        with self._lock:
            return self._refresh_token_lifetime

    @refresh_token_lifetime.setter
    def refresh_token_lifetime(self, seconds: float | None) -> None:
        with self._lock:
            self._refresh_token_lifetime = seconds

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Strict rotation: each refresh returns a new refresh token and ends the used one."""
        with self._lock:
            return self._rotate_refresh_tokens

    @rotate_refresh_tokens.setter
    def rotate_refresh_tokens(self, on: bool) -> None:
        with self._lock:
            self._rotate_refresh_tokens = on

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        with self._lock:
            for token in self._access_tokens.values():
                token.expires_at = min(token.expires_at, time.monotonic())

    def revoke(self, user: str) -> None:
        """End every refresh and access token issued so far for ``user`` (a person, or a
        mailbox an app or service account sends as), as a password reset or an
        administrator's revocation does. A later sign-in, or an app's new token, works."""
        with self._lock:
            self._revoked[user.casefold()] = self._serial

    def outage(
        self, mode: OutageMode, *, retry_after: int | None = None, times: int | None = None
    ) -> None:
        """Fail every request from now on (or the next ``times``): ``"503"`` answers HTTP 503
        ``temporarily_unavailable`` (with ``Retry-After`` if given), ``"reset"`` closes the
        connection without an answer."""
        if mode not in get_args(OutageMode):
            raise ValueError(f"mode must be one of {get_args(OutageMode)}, not {mode!r}")
        with self._lock:
            self._outage = (mode, retry_after, times)

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    # The person at the browser

    def wait_for_device_code(self, timeout: float = 10.0) -> str:
        """Block until a device code is pending; return its user code (the oldest pending)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._pending_user_code() is not None, timeout):
                raise TimeoutError(f"no device code was requested within {timeout} s")
            return str(self._pending_user_code())

    def approve_device_code(self, user_code: str, *, user: str) -> None:
        """``user`` signs in at the verification page with this code and consents."""
        self._decide(user_code, "approved", user)

    def deny_device_code(self, user_code: str) -> None:
        """The person declines: the next poll answers ``authorization_declined``."""
        self._decide(user_code, "declined", None)

    def expire_device_code(self, user_code: str) -> None:
        """The code runs out: the next poll answers ``expired_token``."""
        self._decide(user_code, "expired", None)

    def sign_in_as(self, user: str) -> None:
        """The Google account signed in at the browser; it consents to what is asked."""
        with self._lock:
            self._browser_user, self._refuse_consent = user, False

    def refuse_consent(self) -> None:
        """The person at the browser clicks Cancel: ``error=access_denied`` to the redirect."""
        with self._lock:
            self._refuse_consent = True

    def _pending_user_code(self) -> str | None:
        for code in self._device_codes.values():
            if code.state == "pending" and code.expires_at > time.monotonic():
                return code.user_code
        return None

    def _decide(self, user_code: str, state: Literal["approved", "declined", "expired"],
                user: str | None) -> None:  # fmt: skip
        with self._lock:
            for code in self._device_codes.values():
                if code.user_code == user_code.strip().upper() and code.state == "pending":
                    code.state, code.user = state, user
                    return
        raise KeyError(f"no pending device code {user_code!r}")

    # Observations

    @property
    def token_requests(self) -> tuple[TokenRequest, ...]:
        with self._lock:
            return tuple(self._token_requests)

    def wait_for_token_request(
        self, match: Callable[[TokenRequest], bool], timeout: float = 10.0
    ) -> TokenRequest:
        """Block until a token request that ``match`` accepts has been answered; return it."""

        def found() -> TokenRequest | None:
            return next((r for r in self._token_requests if match(r)), None)

        with self._lock:
            if not self._lock.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"no such token request within {timeout} s")
            return cast(TokenRequest, found())

    @property
    def errors(self) -> tuple[str, ...]:
        """Tracebacks of exceptions inside the server (a kit bug)."""
        with self._lock:
            return tuple(self._errors)

    def record_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def check_access_token(
        self, token: str, *, login: str, smtp_scope: str | Collection[str]
    ) -> TokenCheck:
        """Whether ``token`` lets ``login`` sign in to SMTP; it must carry ``smtp_scope``
        (or one of several). What an SMTP server asks its authorisation server."""
        accepted = {smtp_scope} if isinstance(smtp_scope, str) else set(smtp_scope)
        with self._lock:
            record = self._access_tokens.get(token)
            if record is None:
                return TokenCheck(False, "unknown", None)
            speaks_for = self._speaks_for(record, login)
            reason: CheckReason | None = None
            if self._is_revoked(record.user or login, record.serial):
                reason = "revoked"
            elif record.expires_at <= time.monotonic():
                reason = "expired"
            elif not speaks_for:
                reason = "wrong user"
            elif not record.scopes & accepted:
                reason = "scope"
            return TokenCheck(reason is None, reason, record.user)

    def _speaks_for(self, record: _AccessToken, login: str) -> bool:
        if record.user is not None:
            return _same_user(record.user, login)
        client = self._clients.get(record.client_id)
        return client is not None and login.casefold() in client.mailboxes

    def _is_revoked(self, user: str, serial: int) -> bool:
        return serial <= self._revoked.get(user.casefold(), 0)

    # Requests

    def answer(
        self, method: str, path: str, form: dict[str, str], authorization: str | None
    ) -> _Answer | None:
        """The answer to one request (None: drop the connection); called by the handler."""
        for route_method, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                outage = self._take_outage()
                if outage is not None:
                    return self._outage_answer(path, form, *outage)
                return route(match, form, authorization)
        return _json(404, {"error": "not_found", "error_description": f"{method} {path}"})

    def _take_outage(self) -> tuple[OutageMode, int | None] | None:
        with self._lock:
            if self._outage is None:
                return None
            mode, retry_after, times = self._outage
            if times is not None:
                self._outage = (mode, retry_after, times - 1) if times > 1 else None
            return mode, retry_after

    def _outage_answer(
        self, path: str, form: dict[str, str], mode: OutageMode, retry_after: int | None
    ) -> _Answer | None:
        provider: Provider = "microsoft" if "/oauth2/v2.0/" in path else "google"
        if path.endswith("/token"):
            self._log_request(provider, form, None, "reset" if mode == "reset" else "503")
        if mode == "reset":
            return None
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        if provider == "microsoft":
            body = _microsoft_error(
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            ).answer.body
        else:
            body = json.dumps(
                {"error": "temporarily_unavailable", "error_description": "Service unavailable."}
            ).encode()
        return _Answer(503, body, headers=headers)

    def _log_request(
        self, provider: Provider, form: Mapping[str, str], user: str | None, error: str | None
    ) -> None:
        record = TokenRequest(
            provider=provider,
            grant_type=form.get("grant_type", ""),
            client_id=form.get("client_id"),
            user=user,
            time=time.time(),
            error=error,
        )
        with self._lock:
            self._token_requests.append(record)
            self._lock.notify_all()

    # Microsoft: discovery

    def _openid_configuration(
        self, match: re.Match[str], form: dict[str, str], authorization: str | None
    ) -> _Answer:
        tenant = match["tenant"]
        base = f"{self.base_url}/{tenant}"
        issuer_tenant = tenant if _GUID.fullmatch(tenant) else "{tenantid}"
        return _json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "oid",
                                     "preferred_username", "tid", "email"],
                "tenant_region_scope": None,
                "cloud_instance_name": "microsoftonline.com",
            },
        )  # fmt: skip

    def _keys(self, match: re.Match[str], form: dict[str, str], auth: str | None) -> _Answer:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_signing_key().public_key()))
        return _json(200, {"keys": [jwk | {"kid": SIGNING_KEY_ID, "use": "sig", "alg": "RS256"}]})

    def _devicelogin(self, match: re.Match[str], form: dict[str, str], auth: str | None) -> _Answer:
        return _html(200, "Enter code (tests approve with OAuthTestServer.approve_device_code)")

    # Microsoft: device code

    def _devicecode(self, match: re.Match[str], form: dict[str, str], auth: str | None) -> _Answer:
        tenant, client_id = match["tenant"], form.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or client.provider != "microsoft":
            return _unknown_microsoft_client(client_id, tenant).answer
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
        device_code = secrets.token_urlsafe(48)
        with self._lock:
            self._device_codes[device_code] = _DeviceCode(
                client_id=client_id,
                user_code=user_code,
                scopes=_scopes(form.get("scope")),
                tenant=tenant,
                expires_at=time.monotonic() + self.device_code_lifetime,
            )
            self._lock.notify_all()
        verification_uri = f"{self.base_url}/devicelogin"
        return _json(
            200,
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": verification_uri,
                "expires_in": math.ceil(self.device_code_lifetime),
                "interval": self.device_code_interval,
                "message": f"To sign in, use a web browser to open the page {verification_uri}"
                f" and enter the code {user_code} to authenticate.",
            },
        )

    # Microsoft: the token endpoint

    def _microsoft_token(
        self, match: re.Match[str], form: dict[str, str], auth: str | None
    ) -> _Answer:
        grants: dict[str, Callable[[str, dict[str, str]], tuple[dict[str, Any], str | None]]] = {
            DEVICE_CODE_GRANT: self._device_code_grant,
            "refresh_token": self._microsoft_refresh_grant,
            "client_credentials": self._client_credentials_grant,
        }
        grant = grants.get(form.get("grant_type", ""))
        try:
            if grant is None:
                raise _microsoft_error(
                    "unsupported_grant_type",
                    70003,
                    f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.",
                )
            body, user = grant(match["tenant"], form)
        except _Refusal as refusal:
            self._log_request("microsoft", form, None, refusal.error)
            return refusal.answer
        self._log_request("microsoft", form, user, None)
        return _json(200, body)

    def _device_code_grant(self, tenant: str, form: dict[str, str]) -> tuple[dict[str, Any], str]:
        client = self._microsoft_client(tenant, form, credential_required=False)
        with self._lock:
            code = self._device_codes.get(form.get("device_code", ""))
            if code is None or code.client_id != client.client_id:
                raise _microsoft_error(
                    "invalid_grant", 70000, "The provided value for the input parameter"
                    " 'device_code' is not valid.",
                )  # fmt: skip
            if code.state == "pending" and code.expires_at <= time.monotonic():
                code.state = "expired"
            state, user = code.state, code.user
            if state == "approved":
                code.state = "redeemed"
        if state != "approved" or user is None:
            raise _DEVICE_CODE_REFUSALS[state]()
        return self._microsoft_tokens(client, user, code.scopes, tenant, form), user

    def _microsoft_refresh_grant(
        self, tenant: str, form: dict[str, str]
    ) -> tuple[dict[str, Any], str]:
        client = self._microsoft_client(tenant, form, credential_required=False)
        token = form.get("refresh_token", "")
        requested = _scopes(form.get("scope"))
        with self._lock:
            record = self._refresh_tokens.get(token)
            if record is None or record.provider != "microsoft":
                raise _microsoft_error(
                    "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
                )
            self._check_microsoft_refresh_token(record, client)
            if not requested - RESERVED_SCOPES <= record.scopes:
                raise _microsoft_error(
                    "invalid_grant", 65001, "The user or administrator has not consented to use"
                    f" the application with ID '{client.client_id}'. Send an interactive"
                    " authorization request for this user and resource.",
                )  # fmt: skip
            if self._rotate_refresh_tokens:
                record.used = True
        scopes = (requested or record.scopes) | (record.scopes & RESERVED_SCOPES)
        return self._microsoft_tokens(client, record.user, scopes, record.tenant, form), record.user

    def _check_microsoft_refresh_token(self, record: _RefreshToken, client: _Client) -> None:
        issued = dt.datetime.fromtimestamp(record.issued_at, dt.UTC).isoformat()
        if record.client_id != client.client_id or record.used:
            raise _microsoft_error(
                "invalid_grant", 70000, "Provided grant is invalid or malformed."
            )
        if self._is_revoked(record.user, record.serial):
            now = dt.datetime.now(dt.UTC).isoformat()
            raise _microsoft_error(
                "invalid_grant", 50173, "The provided grant has expired due to it being revoked,"
                " a fresh auth token is needed. The user might have changed or reset their"
                f" password. The grant was issued on '{issued}' and the TokensValidFrom date"
                f" (before which tokens are not valid) for this user is '{now}'.",
            )  # fmt: skip
        if record.expires_at is not None and record.expires_at <= time.monotonic():
            inactive = dt.timedelta(seconds=round(time.time() - record.issued_at))
            raise _microsoft_error(
                "invalid_grant", 700082, "The refresh token has expired due to inactivity. The"
                f" token was issued on {issued} and was inactive for {inactive}.",
            )  # fmt: skip

    def _client_credentials_grant(
        self, tenant: str, form: dict[str, str]
    ) -> tuple[dict[str, Any], None]:
        client = self._microsoft_client(tenant, form, credential_required=True)
        scopes = _scopes(form.get("scope"))
        if len(scopes) != 1 or not next(iter(scopes)).endswith("/.default"):
            raise _microsoft_error(
                "invalid_scope", 1002012, f"The provided value for scope {' '.join(scopes)} is"
                " not valid. Client credential flows must have a scope value with /.default"
                " suffixed to the resource identifier (application ID URI).",
            )  # fmt: skip
        access_token, lifetime = self._issue_access_token(
            "microsoft", client.client_id, None, scopes
        )
        body = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        return body, None

    def _microsoft_client(
        self, tenant: str, form: dict[str, str], *, credential_required: bool
    ) -> _Client:
        """The registered client the request names, authenticated if it is confidential."""
        client_id = form.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or client.provider != "microsoft":
            raise _unknown_microsoft_client(client_id, tenant)
        if client.confidential:
            self._authenticate_microsoft_client(client, tenant, form)
        elif credential_required:
            raise _microsoft_error(
                "invalid_client", 7000218, "The request body must contain the following"
                " parameter: 'client_assertion' or 'client_secret'.", 401,
            )  # fmt: skip
        return client

    def _authenticate_microsoft_client(
        self, client: _Client, tenant: str, form: dict[str, str]
    ) -> None:
        if client.secret is not None:
            given = form.get("client_secret", "")
            if not hmac.compare_digest(given.encode(), client.secret.encode()):
                raise _microsoft_error(
                    "invalid_client", 7000215, "Invalid client secret provided. Ensure the"
                    " secret being sent in the request is the client secret value, not the"
                    f" client secret ID, for a secret added to app '{client.client_id}'.", 401,
                )  # fmt: skip
            return
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise _microsoft_error(
                "invalid_client", 7000218, "The request body must contain the following"
                " parameter: 'client_assertion' or 'client_secret'.", 401,
            )  # fmt: skip
        self._verify_client_assertion(client, tenant, form.get("client_assertion", ""))

    def _verify_client_assertion(self, client: _Client, tenant: str, assertion: str) -> None:
        """As Entra ID: the certificate named by x5t (SHA-1) or x5t#S256 must be the registered
        one, its key must have signed (RS256 or PS256), aud is the token endpoint, iss = sub =
        the client id, and it must not have expired."""
        assert client.certificate is not None
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as error:
            raise _microsoft_error(
                "invalid_client", 50027, f"JWT token is invalid or malformed. {error}", 401
            ) from None
        thumbprints = {
            "x5t": client.certificate.fingerprint(hashes.SHA1()),  # noqa: S303 - Entra's x5t
            "x5t#S256": client.certificate.fingerprint(hashes.SHA256()),
        }
        if not any(_thumbprint(header.get(name)) == value for name, value in thumbprints.items()):
            used = header.get("x5t#S256") or header.get("x5t")
            raise _microsoft_error(
                "invalid_client", 700027, "The certificate with identifier used to sign the"
                " client assertion is not registered on application. [Reason - The key was not"
                f" found., Thumbprint of key used by client: '{used}', Please visit the Azure"
                " Portal, Graph Explorer or directly use MS Graph to see configured keys for app"
                f" Id '{client.client_id}'.]", 401,
            )  # fmt: skip
        claims = _decode_assertion(
            assertion,
            client.certificate.public_key(),
            audience=self.microsoft_token_url(tenant),
            issuer=client.client_id,
        )
        if claims.get("sub") != client.client_id:
            raise _microsoft_error(
                "invalid_client", 700021, "Client assertion application identifier doesn't"
                " match 'client_id' parameter.", 401,
            )  # fmt: skip

    def _microsoft_tokens(
        self,
        client: _Client,
        user: str,
        scopes: frozenset[str],
        tenant: str,
        form: Mapping[str, str],
    ) -> dict[str, Any]:
        """A delegated token response: access token for the resource scopes; a refresh token
        for offline_access; an ID token for openid; client_info when asked (msal always asks)."""
        resource_scopes = scopes - RESERVED_SCOPES
        access_token, lifetime = self._issue_access_token(
            "microsoft", client.client_id, user, resource_scopes
        )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(sorted(resource_scopes)),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        if "offline_access" in scopes:
            body["refresh_token"] = self._issue_refresh_token(
                "microsoft", client.client_id, user, scopes, tenant
            )
        tid, oid = _tenant_id(tenant, user), _guid_for(user)
        if "openid" in scopes:
            body["id_token"] = self._id_token(
                {
                    "aud": client.client_id,
                    "iss": f"{self.base_url}/{tid}/v2.0",
                    "tid": tid,
                    "oid": oid,
                    "sub": _b64url(hashlib.sha256(f"{oid}:{client.client_id}".encode()).digest()),
                    "preferred_username": user,
                    "name": user.partition("@")[0].replace(".", " ").title(),
                    "ver": "2.0",
                }
            )
        if form.get("client_info") == "1":
            body["client_info"] = _b64url(json.dumps({"uid": oid, "utid": tid}).encode())
        return body

    # Google: the authorisation page

    def _google_authorize(
        self, match: re.Match[str], form: dict[str, str], auth: str | None
    ) -> _Answer:
        with self._lock:
            client = self._clients.get(form.get("client_id", ""))
            user, refuse = self._browser_user, self._refuse_consent
        redirect_uri = form.get("redirect_uri", "")
        if client is None or client.provider != "google":
            return _html(401, "Error 401: invalid_client. The OAuth client was not found.")
        if not _is_loopback_redirect(redirect_uri) or form.get("response_type") != "code":
            return _html(400, "Error 400: redirect_uri_mismatch. Access blocked: This app's"
                              " request is invalid")  # fmt: skip
        state = {"state": form["state"]} if "state" in form else {}
        if refuse:
            return self._redirect(_with_query(redirect_uri, state | {"error": "access_denied"}))
        if user is None:
            return _html(400, "Nobody is signed in: call OAuthTestServer.sign_in_as(user) first")
        scopes = _scopes(form.get("scope"))
        code = self.note_secret("4/0A" + secrets.token_urlsafe(48))
        with self._lock:
            self._auth_codes[code] = _AuthCode(
                client_id=client.client_id,
                user=user,
                scopes=scopes,
                redirect_uri=redirect_uri,
                challenge=form.get("code_challenge"),
                challenge_method=form.get("code_challenge_method", "plain"),
                offline=form.get("access_type") == "offline",
                expires_at=time.monotonic() + AUTH_CODE_LIFETIME_SECONDS,
            )
        granted = {"code": code, "scope": " ".join(sorted(scopes)), "authuser": "0"}
        return self._redirect(_with_query(redirect_uri, state | granted | {"prompt": "consent"}))

    @staticmethod
    def _redirect(location: str) -> _Answer:
        return _Answer(302, b"", "text/html; charset=utf-8", {"Location": location})

    # Google: the token endpoint

    def _google_token(
        self, match: re.Match[str], form: dict[str, str], auth: str | None
    ) -> _Answer:
        grants: dict[str, Callable[[dict[str, str], str | None], tuple[dict[str, Any], str]]] = {
            "authorization_code": self._authorization_code_grant,
            "refresh_token": self._google_refresh_grant,
            JWT_BEARER_GRANT: self._service_account_grant,
        }
        grant = grants.get(form.get("grant_type", ""))
        try:
            if grant is None:
                raise _google_error(
                    "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}"
                )
            body, user = grant(form, auth)
        except _Refusal as refusal:
            self._log_request("google", form, None, refusal.error)
            return refusal.answer
        self._log_request("google", form, user, None)
        return _json(200, body)

    def _google_client(self, form: dict[str, str], authorization: str | None) -> _Client:
        """The client, authenticated by HTTP Basic (requests-oauthlib) or the body (google-auth)."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization and authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode("utf-8", "replace")
            client_id, _, secret = (urllib.parse.unquote(p) for p in decoded.partition(":"))
            form.setdefault("client_id", client_id)  # for the record of the request
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or client.provider != "google":
            raise _google_error("invalid_client", "The OAuth client was not found.", 401)
        if not hmac.compare_digest(secret.encode(), (client.secret or "").encode()):
            raise _google_error("invalid_client", "Unauthorized", 401)
        return client

    def _authorization_code_grant(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[dict[str, Any], str]:
        client = self._google_client(form, authorization)
        with self._lock:
            code = self._auth_codes.get(form.get("code", ""))
            if code is None:
                raise _google_error("invalid_grant", "Malformed auth code.")
            if (
                code.used
                or code.client_id != client.client_id
                or code.expires_at <= time.monotonic()
            ):
                raise _google_error("invalid_grant", "Bad Request")
            if form.get("redirect_uri") != code.redirect_uri:
                raise _google_error("redirect_uri_mismatch", "Bad Request")
            _check_code_verifier(code, form.get("code_verifier"))
            code.used = True
        return self._google_tokens(client, code.user, code.scopes, refresh=code.offline), code.user

    def _google_refresh_grant(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[dict[str, Any], str]:
        client = self._google_client(form, authorization)
        with self._lock:
            record = self._refresh_tokens.get(form.get("refresh_token", ""))
            if (
                record is None
                or record.provider != "google"
                or record.used
                or self._is_revoked(record.user, record.serial)
                or (record.expires_at is not None and record.expires_at <= time.monotonic())
            ):
                raise _google_error("invalid_grant", GOOGLE_EXPIRED_OR_REVOKED)
            if record.client_id != client.client_id:
                raise _google_error("unauthorized_client", "Unauthorized")
            if not _scopes(form.get("scope")) <= record.scopes:
                raise _google_error("invalid_scope", "Bad Request")
            rotate = self._rotate_refresh_tokens
            record.used = rotate
        return self._google_tokens(client, record.user, record.scopes, refresh=rotate), record.user

    def _service_account_grant(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[dict[str, Any], str]:
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            key_id = jwt.get_unverified_header(assertion).get("kid")
        except jwt.PyJWTError:
            raise _google_error("invalid_grant", "Invalid JWT Signature.") from None
        with self._lock:
            account = self._service_accounts.get(str(unverified.get("iss")))
        if account is None:
            raise _google_error("invalid_grant", "Invalid grant: account not found")
        if key_id != account.key_id:
            raise _google_error("invalid_grant", "Invalid JWT Signature.")
        claims = _decode_google_assertion(
            assertion, account.public_key, (*GOOGLE_TOKEN_AUDIENCES, self.google_token_url)
        )
        subject = claims.get("sub")
        if subject is not None and str(subject).casefold() not in account.delegated:
            raise _google_error("unauthorized_client", GOOGLE_UNAUTHORIZED_CLIENT, 401)
        scopes = _scopes(claims.get("scope"))
        if not scopes:
            raise _google_error(
                "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        user = str(subject or account.client_email)
        access_token, lifetime = self._issue_access_token("google", account.client_id, user, scopes)
        return {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer"}, user

    def _google_tokens(
        self, client: _Client, user: str, scopes: frozenset[str], *, refresh: bool
    ) -> dict[str, Any]:
        """Google's answer: the granted scopes in Google's order (not the request's: oauthlib
        then needs OAUTHLIB_RELAX_TOKEN_SCOPE), an ID token when openid was granted."""
        access_token, lifetime = self._issue_access_token("google", client.client_id, user, scopes)
        body: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": lifetime,
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
        }
        if refresh:
            body["refresh_token"] = self._issue_refresh_token(
                "google", client.client_id, user, scopes, ""
            )
        if "openid" in scopes:
            body["id_token"] = self._id_token(
                {
                    "iss": GOOGLE_ISSUER,
                    "azp": client.client_id,
                    "aud": client.client_id,
                    "sub": str(int(hashlib.sha256(user.casefold().encode()).hexdigest()[:16], 16)),
                    "email": user,
                    "email_verified": True,
                    "at_hash": _b64url(hashlib.sha256(access_token.encode()).digest()[:16]),
                }
            )
        return body

    # Issuing

    def _issue_access_token(
        self, provider: Provider, client_id: str, user: str | None, scopes: frozenset[str]
    ) -> tuple[str, int]:
        """A new opaque access token and its expires_in."""
        prefix = "ya29.a0" if provider == "google" else "EwB"
        token = self.note_secret(prefix + secrets.token_urlsafe(48))
        with self._lock:
            lifetime = self._access_token_lifetime
            self._serial += 1
            self._access_tokens[token] = _AccessToken(
                provider, client_id, user, scopes, self._serial, time.monotonic() + lifetime
            )
        return token, max(1, math.ceil(lifetime))

    def _issue_refresh_token(
        self, provider: Provider, client_id: str, user: str, scopes: frozenset[str], tenant: str
    ) -> str:
        prefix = "1//0" if provider == "google" else "1.A"
        token = self.note_secret(prefix + secrets.token_urlsafe(64))
        with self._lock:
            lifetime = self._refresh_token_lifetime
            self._serial += 1
            self._refresh_tokens[token] = _RefreshToken(
                provider=provider,
                client_id=client_id,
                user=user,
                scopes=scopes,
                tenant=tenant,
                serial=self._serial,
                issued_at=time.time(),
                expires_at=None if lifetime is None else time.monotonic() + lifetime,
            )
        return token

    def _id_token(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        payload = claims | {"iat": now, "nbf": now, "exp": now + 3600}
        return jwt.encode(
            payload, _signing_key(), algorithm="RS256", headers={"kid": SIGNING_KEY_ID}
        )


# --- Verifying what clients sign --------------------------------------------------------------


def _decode_assertion(
    assertion: str, key: PublicKeyTypes, *, audience: str, issuer: str
) -> dict[str, Any]:
    """A Microsoft client assertion's claims, verified, or Entra ID's refusal."""
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,  # type: ignore[arg-type]  # an RSA certificate's key, as PyJWT wants
            algorithms=["RS256", "PS256"],
            audience=audience,
            issuer=issuer,
            leeway=JWT_LEEWAY_SECONDS,
            options={"require": ["aud", "iss", "sub", "exp"]},
        )
    except jwt.InvalidSignatureError:
        raise _microsoft_error(
            "invalid_client", 700027, "Client assertion failed signature validation.", 401
        ) from None
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
        raise _microsoft_error(
            "invalid_client", 700024, "Client assertion is not within its valid time range.", 401
        ) from None
    except jwt.InvalidAudienceError:
        raise _microsoft_error(
            "invalid_client", 700212, "No matching federated identity record found for"
            f" presented assertion audience '{audience}'.", 401,
        ) from None  # fmt: skip
    except jwt.PyJWTError as error:
        raise _microsoft_error(
            "invalid_client", 50027, f"JWT token is invalid or malformed. {error}", 401
        ) from None
    return claims


def _decode_google_assertion(
    assertion: str, key: rsa.RSAPublicKey, audiences: Iterable[str]
) -> dict[str, Any]:
    """A service account's assertion's claims, verified, or Google's refusal."""
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,
            algorithms=["RS256"],
            audience=list(audiences),
            leeway=JWT_LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat"]},
        )
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
        raise _google_error(
            "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a"
            " reasonable timeframe. Check your iat and exp values in the JWT claim.",
        ) from None  # fmt: skip
    except jwt.InvalidAudienceError:
        raise _google_error("invalid_grant", "Invalid JWT: Failed audience check.") from None
    except jwt.PyJWTError:
        raise _google_error("invalid_grant", "Invalid JWT Signature.") from None
    return claims


def _check_code_verifier(code: _AuthCode, verifier: str | None) -> None:
    """PKCE (RFC 7636): the verifier must hash to the challenge the authorisation request sent."""
    if code.challenge is None:
        return
    if not verifier:
        raise _google_error("invalid_grant", "Missing code verifier.")
    expected = _s256(verifier) if code.challenge_method == "S256" else verifier
    if not hmac.compare_digest(expected.encode(), code.challenge.encode()):
        raise _google_error("invalid_grant", "Bad Request")


_DEVICE_CODE_REFUSALS: dict[str, Callable[[], _Refusal]] = {
    "pending": lambda: _microsoft_error(
        "authorization_pending", 70016,
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    ),
    "declined": lambda: _microsoft_error(
        "authorization_declined", 70000,
        "The user denied the authorization request.",  # Entra's device flow: "declined"
    ),
    "expired": lambda: _microsoft_error("expired_token", 70019, "Verification code expired."),
    "redeemed": lambda: _microsoft_error(
        "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry"
        " with a new valid code or use an existing refresh token.",
    ),
}  # fmt: skip
