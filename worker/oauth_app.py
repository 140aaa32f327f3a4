"""How an OAuth profile signs in: its provider's endpoints and scopes, and the app (pure).

A profile with ``auth_method = "oauth2"`` names a provider (Microsoft or Google), a flow and
the client id of an app registered with that provider; :class:`OAuthApp` adds what follows
from them: the authority or token endpoint (the global ones unless the profile overrides
them, as national clouds need), the scopes, and how HTTPS to them is verified.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from worker.profiles import OAuthFlow, OAuthProvider, Profile
from worker.sentences import N_

__all__ = [
    "GOOGLE_AUTH_URL",
    "GOOGLE_SMTP_SCOPE",
    "GOOGLE_TOKEN_URL",
    "MICROSOFT_AUTHORITY_HOST",
    "GrantSummary",
    "OAuthApp",
    "StoredGrant",
    "authorize_again_hint",
]

MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"
# Delegated: a person's mailbox. msal adds offline_access (for the refresh token) by itself and
# refuses it among the scopes it is given.
MICROSOFT_DELEGATED_SCOPES = ("https://outlook.office.com/SMTP.Send",)
# App-only: the app's own permission, granted by an administrator.
MICROSOFT_APP_SCOPES = ("https://outlook.office365.com/.default",)
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - an address
GOOGLE_SMTP_SCOPE = "https://mail.google.com/"
# The e-mail scopes name who consented (profiles show says who authorised a profile).
GOOGLE_PERSON_SCOPES = ("openid", "https://www.googleapis.com/auth/userinfo.email")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OAuthApp:
    """The settings one profile signs in with; no secret (those stay encrypted apart)."""

    profile: str
    provider: OAuthProvider
    flow: OAuthFlow
    client_id: str
    mailbox: str  # the SMTP login: the address whose mailbox sends
    authority: str  # Microsoft: https://host/tenant
    token_url: str  # Google
    auth_url: str  # Google
    verify: str | bool  # a CA file, or True for the system's store
    timeout: float

    @classmethod
    def of(cls, profile: Profile) -> OAuthApp:
        if profile.oauth_provider is None or profile.oauth_flow is None:
            raise ValueError(f"profile {profile.name} does not sign in with OAuth 2.0")
        # The authority is a host (another cloud's, or the global one); the tenant its path.
        host = (profile.oauth_authority or MICROSOFT_AUTHORITY_HOST).rstrip("/")
        authority = f"{host}/{profile.oauth_tenant or 'organizations'}"
        return cls(
            profile=profile.name,
            provider=profile.oauth_provider,
            flow=profile.oauth_flow,
            client_id=profile.oauth_client_id or "",
            mailbox=profile.login or profile.from_address,
            authority=authority,
            token_url=profile.oauth_token_url or GOOGLE_TOKEN_URL,
            auth_url=profile.oauth_auth_url or GOOGLE_AUTH_URL,
            verify=profile.ca_bundle or True,
            timeout=float(profile.timeout_seconds),
        )

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the app asks for: those SMTP needs (and, for a person, who they are)."""
        if self.provider == "microsoft":
            app_only = self.flow == "client_credentials"
            return MICROSOFT_APP_SCOPES if app_only else MICROSOFT_DELEGATED_SCOPES
        if self.flow == "service_account":
            return (GOOGLE_SMTP_SCOPE,)
        return (*GOOGLE_PERSON_SCOPES, GOOGLE_SMTP_SCOPE)

    @property
    def needs_person(self) -> bool:
        """Whether a person signs in once (device code, consent page) before it can send."""
        return self.flow in {"device_code", "authorization_code"}


def authorize_again_hint(profile: str) -> str:
    """What to do when the sign-in is no longer valid."""
    return N_("authorise again: mailworker profiles authorize %(profile)s (docs/oauth.md)") % {
        "profile": profile
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredGrant:
    """A profile's row of ``mail.oauth_grant``: its tokens still encrypted."""

    profile_id: int
    refresh_token_encrypted: bytes | None = dataclasses.field(default=None, repr=False)
    access_token_encrypted: bytes | None = dataclasses.field(default=None, repr=False)
    access_expires_at: datetime | None = None
    scopes: str = ""
    authorized_by: str | None = None
    authorized_at: datetime | None = None
    refreshed_at: datetime | None = None
    refresh_count: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class GrantSummary:
    """What a person may see of a grant (``profiles show``, ``status``): never a token."""

    profile: str
    scopes: str
    authorized_by: str | None
    authorized_at: datetime | None
    access_expires_at: datetime | None
    refreshed_at: datetime | None
    refresh_count: int
    has_refresh_token: bool
