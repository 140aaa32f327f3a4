"""The OAuth 2.0 grants, spoken by the providers' own libraries: msal and google-auth.

Every function here blocks (the libraries use ``requests``): callers run them in a thread
(``asyncio.to_thread``), never on the event loop. They return :class:`Tokens` or raise one
of three errors, which is all a caller needs to decide:

* :class:`SignInInvalid`: the grant is gone (revoked consent, an expired or rotated-away
  refresh token, a declined sign-in). A person must authorise the profile again.
* :class:`AppRefused`: the provider refuses the app itself (client id, secret, certificate,
  delegation): the profile's OAuth settings are wrong.
* :class:`TokenEndpointUnavailable`: the provider could not be reached or answered 5xx;
  passing trouble, tried again later.

No token, secret or key ever goes into an error's text: only the provider's error code and
description.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import google.oauth2.service_account
import jwt
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from worker.errors import AppRefused, OAuthError, SignInInvalid, TokenEndpointUnavailable
from worker.oauth_app import OAuthApp
from worker.sentences import N_

__all__ = [
    "DeviceCode",
    "Tokens",
    "certificate_credential",
    "finish_device_code",
    "finish_google_consent",
    "renew",
    "start_device_code",
    "start_google_consent",
]

# Errors of RFC 6749 (and the device grant's, RFC 8628) by what they mean for the profile.
_GRANT_GONE = {
    "invalid_grant",
    "interaction_required",
    "consent_required",
    "authorization_declined",
    "access_denied",
    "expired_token",
    "bad_verification_code",
}
_UNAVAILABLE = {"temporarily_unavailable", "server_error"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tokens:
    """What a grant gave. ``refresh_token`` None: keep the one there is (or there is none)."""

    access_token: str = dataclasses.field(repr=False)
    expires_at: datetime
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    scopes: str = ""
    account: str | None = None  # who signed in, as the provider names them


@dataclasses.dataclass(frozen=True)
class DeviceCode:
    """A started device-code sign-in: what to tell the person, and msal's state."""

    message: str  # "To sign in, use a web browser to open the page ... and enter the code ..."
    user_code: str
    verification_uri: str
    state: Mapping[str, Any] = dataclasses.field(repr=False)


# --- renewing: what a worker does ---------------------------------------------------------


def renew(app: OAuthApp, *, credential: str | None, refresh_token: str | None) -> Tokens:
    """A new access token for ``app``: from the refresh token, or from the app's own
    credential (client credentials, a service account's key)."""
    match (app.provider, app.flow):
        case ("microsoft", "client_credentials"):
            confidential = _microsoft_app(app, credential)
            result = _call(app, lambda: confidential.acquire_token_for_client(list(app.scopes)))
            return _microsoft_tokens(app, result, account=app.mailbox)
        case ("microsoft", _):
            if refresh_token is None:
                raise SignInInvalid(_not_authorised(app), profile=app.profile)
            public = _microsoft_public(app)
            result = _call(
                app, lambda: public.acquire_token_by_refresh_token(refresh_token, list(app.scopes))
            )
            return _microsoft_tokens(app, result)
        case ("google", "service_account"):
            return _google_service_account(app, credential)
        case _:
            if refresh_token is None:
                raise SignInInvalid(_not_authorised(app), profile=app.profile)
            return _google_refresh(app, credential, refresh_token)


# --- Microsoft ----------------------------------------------------------------------------


def start_device_code(app: OAuthApp) -> DeviceCode:
    """Begin a device-code sign-in (Microsoft, a person's mailbox)."""
    flow = _call(app, lambda: _microsoft_public(app).initiate_device_flow(scopes=list(app.scopes)))
    if "user_code" not in flow:
        raise _microsoft_error(app, flow)
    return DeviceCode(
        message=str(flow.get("message", "")),
        user_code=str(flow["user_code"]),
        verification_uri=str(flow.get("verification_uri", "")),
        state=flow,
    )


def finish_device_code(app: OAuthApp, device_code: DeviceCode, *, wait: float) -> Tokens:
    """Wait until the person has signed in, for ``wait`` seconds at most (or until the code
    expires, if sooner); their tokens."""
    flow = dict(device_code.state)
    # msal polls until the flow's expires_at (its documented way to end the wait early).
    flow["expires_at"] = min(float(flow.get("expires_at", 0) or 0) or 1e18, time.time() + wait)
    result = _call(app, lambda: _microsoft_public(app).acquire_token_by_device_flow(flow))
    if (result or {}).get("error") == "authorization_pending":
        raise SignInInvalid(
            N_("nobody signed in for profile %(profile)s within %(seconds)s s")
            % {"profile": app.profile, "seconds": f"{wait:.0f}"},
            profile=app.profile,
        )
    return _microsoft_tokens(app, result)


def certificate_credential(pem: bytes) -> str:
    """The stored form of an app's certificate credential: a PEM file holding the private key
    and its certificate, as msal wants them (the key and the certificate's SHA-1 thumbprint).

    Raises :class:`ValueError` when the file lacks either part.
    """
    key = serialization.load_pem_private_key(pem, password=None)
    certificate = x509.load_pem_x509_certificate(pem)
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - Entra ID's "x5t"
    private_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps({"private_key": private_key, "thumbprint": thumbprint})


def _microsoft_public(app: OAuthApp) -> msal.PublicClientApplication:
    # Made inside _call: msal reads the authority's OpenID configuration as it starts.
    return _call(
        app,
        lambda: msal.PublicClientApplication(
            app.client_id,
            authority=app.authority,
            instance_discovery=False,  # never ask login.microsoftonline.com about another host
            http_client=_Session(app),
            token_cache=msal.TokenCache(),  # this call's only; the tokens live in the database
        ),
    )


def _microsoft_app(app: OAuthApp, credential: str | None) -> msal.ConfidentialClientApplication:
    if credential is None:
        raise AppRefused(
            N_("profile %(profile)s has no client secret or certificate") % {"profile": app.profile}
        )
    client_credential: str | dict[str, str] = credential
    if credential.startswith("{"):
        client_credential = json.loads(credential)
    return _call(
        app,
        lambda: msal.ConfidentialClientApplication(
            app.client_id,
            client_credential=client_credential,
            authority=app.authority,
            instance_discovery=False,
            http_client=_Session(app),
            token_cache=msal.TokenCache(),
        ),
    )


def _microsoft_tokens(
    app: OAuthApp, result: Mapping[str, Any] | None, *, account: str | None = None
) -> Tokens:
    if not result or "access_token" not in result:
        raise _microsoft_error(app, result or {})
    claims = result.get("id_token_claims") or {}
    return Tokens(
        access_token=str(result["access_token"]),
        expires_at=_expires(result.get("expires_in")),
        refresh_token=result.get("refresh_token"),
        scopes=str(result.get("scope", " ".join(app.scopes))),
        account=account or claims.get("preferred_username") or claims.get("email"),
    )


def _microsoft_error(app: OAuthApp, result: Mapping[str, Any]) -> OAuthError:
    error = str(result.get("error", "no_token"))
    description = " ".join(str(result.get("error_description", "")).split())
    # Entra ID appends "Trace ID: ... Correlation ID: ... Timestamp: ...": noise for a person.
    description = description.split(" Trace ID:")[0]
    return _error_of(app, error, description)


# --- Google -------------------------------------------------------------------------------


def start_google_consent(
    app: OAuthApp, credential: str | None, *, redirect_uri: str
) -> tuple[str, Flow]:
    """The consent page's URL (authorisation code with PKCE) and the flow to finish it."""
    # Google's answer lists the scopes granted in its own order and words; that is no error.
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    flow = Flow.from_client_config(
        {
            "installed": {
                "client_id": app.client_id,
                "client_secret": credential or "",
                "auth_uri": app.auth_url,
                "token_uri": app.token_url,
                "redirect_uris": [redirect_uri],
            }
        },
        scopes=list(app.scopes),
        redirect_uri=redirect_uri,
        autogenerate_code_verifier=True,
    )
    url, _state = flow.authorization_url(access_type="offline", prompt="consent")
    return str(url), flow


def finish_google_consent(app: OAuthApp, flow: Flow, *, code: str) -> Tokens:
    """Exchange the code the consent page sent back for the person's tokens."""
    try:
        token = _call(
            app, lambda: flow.fetch_token(code=code, timeout=app.timeout, verify=app.verify)
        )
    except OAuth2Error as exc:  # oauthlib's, carrying the provider's error code
        raise _error_of(app, str(exc.error), str(exc.description or "")) from None
    return Tokens(
        access_token=str(token["access_token"]),
        expires_at=_expires(token.get("expires_in")),
        refresh_token=token.get("refresh_token"),
        scopes=" ".join(token.get("scope") or app.scopes),
        account=_email_in(token.get("id_token")),
    )


def _google_refresh(app: OAuthApp, credential: str | None, refresh_token: str) -> Tokens:
    credentials = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
        None,
        refresh_token=refresh_token,
        token_uri=app.token_url,
        client_id=app.client_id,
        client_secret=credential,
        scopes=list(app.scopes),
    )
    _google_call(app, credentials)
    return Tokens(
        access_token=str(credentials.token),
        expires_at=_google_expiry(credentials.expiry),
        # Google keeps the refresh token; a new one, should it come, replaces it.
        refresh_token=credentials.refresh_token
        if credentials.refresh_token != refresh_token
        else None,
        scopes=" ".join(app.scopes),
    )


def _google_service_account(app: OAuthApp, credential: str | None) -> Tokens:
    if credential is None:
        raise AppRefused(
            N_("profile %(profile)s has no service-account key") % {"profile": app.profile}
        )
    service_account = google.oauth2.service_account.Credentials
    try:
        info = {**json.loads(credential), "token_uri": app.token_url}
        credentials = service_account.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(app.scopes), subject=app.mailbox
        )
    except (ValueError, TypeError, KeyError) as exc:  # google-auth's MalformedError is one
        raise AppRefused(
            N_("the service-account key of profile %(profile)s is not usable: %(error)s")
            % {"profile": app.profile, "error": _first_line(exc)},
            profile=app.profile,
        ) from None
    _google_call(app, credentials)
    return Tokens(
        access_token=str(credentials.token),
        expires_at=_google_expiry(credentials.expiry),
        scopes=" ".join(app.scopes),
        account=app.mailbox,
    )


def _google_call(app: OAuthApp, credentials: Any) -> None:
    session = _Session(app)
    try:
        credentials.refresh(google.auth.transport.requests.Request(session))
    except google.auth.exceptions.RefreshError as exc:
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        if not data and getattr(exc, "retryable", False):
            raise TokenEndpointUnavailable(f"{app.token_url}: {_first_line(exc)}") from None
        error = str(data.get("error", "refresh_failed"))
        raise _error_of(app, error, str(data.get("error_description", ""))) from None
    except google.auth.exceptions.TransportError as exc:
        raise TokenEndpointUnavailable(f"{app.token_url}: {_first_line(exc)}") from None
    finally:
        session.close()


class _Session(requests.Session):
    """HTTPS to a provider as the profile says: its CA file, and its timeout on every request.

    Both are passed with each request: requests lets ``REQUESTS_CA_BUNDLE`` in the environment
    override a session's own CA file otherwise, and google-auth would wait two minutes.
    """

    def __init__(self, app: OAuthApp) -> None:
        super().__init__()
        self._timeout = app.timeout
        self._verify = app.verify

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["timeout"] = min(kwargs.get("timeout") or self._timeout, self._timeout)
        if self._verify is not True:
            kwargs["verify"] = self._verify
        return super().request(*args, **kwargs)


def _google_expiry(expiry: datetime | None) -> datetime:
    # google-auth keeps expiry as a naive UTC time.
    if expiry is None:
        return datetime.now(UTC) + timedelta(hours=1)
    return expiry.replace(tzinfo=UTC) if expiry.tzinfo is None else expiry


def _email_in(id_token: Any) -> str | None:
    """Who consented, from the ID token the token endpoint itself sent over TLS (OpenID
    Connect allows taking such a token's claims without checking its signature)."""
    if not isinstance(id_token, str):
        return None
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    email = claims.get("email")
    return str(email) if email else None


# --- shared -------------------------------------------------------------------------------


def _call(app: OAuthApp, work: Any) -> Any:
    """``work()``, with a network failure said as :class:`TokenEndpointUnavailable`."""
    try:
        return work()
    except requests.RequestException as exc:
        where = app.authority if app.provider == "microsoft" else app.token_url
        raise TokenEndpointUnavailable(f"{where}: {_first_line(exc)}") from None
    except msal.exceptions.MsalServiceError as exc:
        # msal raises for an HTTP error it cannot read as OAuth's (a 5xx, an HTML page).
        error = str(getattr(exc, "_error", "") or "")
        if not error or error in _UNAVAILABLE:
            raise TokenEndpointUnavailable(f"{app.authority}: {_first_line(exc)}") from None
        raise _error_of(app, error, str(getattr(exc, "_error_description", ""))) from None
    except ValueError as exc:
        # msal refuses settings it cannot use (an authority it cannot read, a malformed
        # certificate) with ValueError: the profile's OAuth settings, not passing trouble.
        raise AppRefused(
            N_("the OAuth settings of profile %(profile)s do not work: %(error)s")
            % {"profile": app.profile, "error": _first_line(exc)},
            profile=app.profile,
        ) from None


def _error_of(app: OAuthApp, error: str, description: str) -> OAuthError:
    values = {"profile": app.profile, "error": f"{error}: {description}" if description else error}
    if error in _GRANT_GONE:
        return SignInInvalid(
            N_("the sign-in of profile %(profile)s is no longer valid (%(error)s)") % values,
            profile=app.profile,
        )
    if error in _UNAVAILABLE:
        return TokenEndpointUnavailable(
            N_("the provider's sign-in service failed (%(error)s)") % values
        )
    return AppRefused(
        N_("the provider refused the app of profile %(profile)s (%(error)s)") % values,
        profile=app.profile,
    )


def _not_authorised(app: OAuthApp) -> str:
    return N_("profile %(profile)s has not been authorised yet") % {"profile": app.profile}


def _expires(expires_in: Any) -> datetime:
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        seconds = 3600.0
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
