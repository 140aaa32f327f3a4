"""OAuth 2.0 decisions without I/O: endpoints and scopes, when a token is renewed, and what a
failed sign-in means for the profile."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from worker.classify import FailureKind, OAuthTokenRefused, Stage, classify, pause_class
from worker.errors import AppRefused, SignInInvalid, TokenEndpointUnavailable
from worker.oauth_app import OAuthApp
from worker.oauth_tokens import fresh_until
from worker.profiles import Profile
from worker.retry import PauseProfile, RetryPolicy, decide

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

OFFICE = Profile(
    id=1,
    name="biuro",
    enabled=True,
    from_address="anna@contoso.com",
    display_name="",
    reply_to=None,
    description="",
    server_type="smtp",
    host="smtp.office365.com",
    port=587,
    encryption="starttls",
    auth_method="oauth2",
    login="anna@contoso.com",
    password_encrypted=None,
    verify_tls=True,
    ca_bundle=None,
    daily_cap=None,
    max_connections=2,
    timeout_seconds=30,
    is_default=True,
    preset="office365",
    oauth_provider="microsoft",
    oauth_flow="device_code",
    oauth_client_id="5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11",
    oauth_tenant="organizations",
)


def test_microsoft_signs_in_at_the_global_authority_with_the_tenant() -> None:
    """Without an override: login.microsoftonline.com/<tenant>, SMTP.Send for a person."""
    app = OAuthApp.of(OFFICE)
    assert "https://login.microsoftonline.com/organizations" == app.authority
    assert ("https://outlook.office.com/SMTP.Send",) == app.scopes
    assert app.needs_person


def test_a_national_cloud_authority_keeps_the_tenant() -> None:
    """GCC High: another host, the same tenant path."""
    profile = dataclasses.replace(
        OFFICE, oauth_authority="https://login.microsoftonline.us/", oauth_tenant="contoso.us"
    )
    assert "https://login.microsoftonline.us/contoso.us" == OAuthApp.of(profile).authority


def test_an_authority_without_a_tenant_gets_the_default_one() -> None:
    """--oauth-authority names a host; the tenant is its path (organizations unless given),
    so msal is never handed an authority without one."""
    profile = dataclasses.replace(
        OFFICE, oauth_authority="https://login.microsoftonline.us", oauth_tenant=None
    )
    assert "https://login.microsoftonline.us/organizations" == OAuthApp.of(profile).authority


def test_app_only_asks_for_the_apps_own_permission() -> None:
    """Client credentials: the .default scope of Exchange Online, no person needed."""
    app = OAuthApp.of(dataclasses.replace(OFFICE, oauth_flow="client_credentials"))
    assert (("https://outlook.office365.com/.default",), False) == (app.scopes, app.needs_person)


def test_google_asks_for_mail_and_who_consented() -> None:
    """A person's Google account: the mail scope and the e-mail address of who consented;
    a service account only the mail scope."""
    google = dataclasses.replace(
        OFFICE, oauth_provider="google", oauth_flow="authorization_code", oauth_tenant=None
    )
    assert "https://mail.google.com/" in OAuthApp.of(google).scopes
    assert "openid" in OAuthApp.of(google).scopes
    service = dataclasses.replace(google, oauth_flow="service_account")
    assert ("https://mail.google.com/",) == OAuthApp.of(service).scopes
    assert "https://oauth2.googleapis.com/token" == OAuthApp.of(service).token_url


@pytest.mark.parametrize(
    ("lifetime", "renewed_before_expiry"),
    [
        (timedelta(hours=1), timedelta(minutes=5)),  # the usual hour: five minutes early
        (timedelta(minutes=8), timedelta(minutes=2)),  # short-lived: a quarter of its life
    ],
)
def test_a_token_is_renewed_before_it_expires(
    lifetime: timedelta, renewed_before_expiry: timedelta
) -> None:
    """No send starts with a token about to lapse, however short-lived the provider's are."""
    expires_at = NOW + lifetime
    assert expires_at - renewed_before_expiry == fresh_until(expires_at, NOW)


@pytest.mark.parametrize(
    ("error", "pause_kind"),
    [
        (
            SignInInvalid("the sign-in of profile biuro is no longer valid (invalid_grant)"),
            "authorization",
        ),
        (
            OAuthTokenRefused("535 5.7.3 Authentication unsuccessful", profile="biuro"),
            "authorization",
        ),
        (TokenEndpointUnavailable("https://login.example: 503"), "unreachable"),
        (AppRefused("the provider refused the app of profile biuro (invalid_client)"), "other"),
    ],
)
def test_a_failed_sign_in_pauses_the_profile_and_spends_no_attempt(
    error: Exception, pause_kind: str
) -> None:
    """Whatever went wrong with the token, the message waits: the profile pauses (with a
    backoff), no attempt is counted, and the pause has a class for the metrics."""
    failure = classify(error, Stage.AUTH)
    decision = decide(
        failure,
        attempt=7,
        age=timedelta(hours=1),
        pause_count=0,
        now=NOW,
        policy=RetryPolicy(),
        rng=random.Random(1),
    )
    assert (FailureKind.PROFILE, True) == (failure.kind, isinstance(decision, PauseProfile))
    assert pause_kind == pause_class(failure.reason)


def test_a_refused_sign_in_says_how_to_authorise_again() -> None:
    """The hint names the command with the profile's name."""
    failure = classify(
        OAuthTokenRefused("535 5.7.3 Authentication unsuccessful", profile="biuro"), Stage.AUTH
    )
    assert failure.hint is not None
    assert "mailworker profiles authorize biuro" in failure.hint
    assert (535, "5.7.3") == (failure.code, failure.enhanced)


def test_smtp_auth_switched_off_says_so_instead() -> None:
    """Microsoft's 5.7.139 (SMTP AUTH off for the mailbox) is not cured by authorising again."""
    refused = OAuthTokenRefused(
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
        profile="biuro",
    )
    hint = classify(refused, Stage.AUTH).hint or ""
    assert "SMTP AUTH is off for the mailbox" in hint


def test_an_app_only_token_refused_points_at_the_mailbox_permission() -> None:
    """Client credentials or a service account: no person can authorise again; what to check
    is the app's right to send as the mailbox."""
    refused = OAuthTokenRefused(
        "535 5.7.3 Authentication unsuccessful", profile="biuro", app_only=True
    )
    hint = classify(refused, Stage.AUTH).hint or ""
    assert "the app may not send as this mailbox" in hint
    assert "profiles authorize" not in hint
