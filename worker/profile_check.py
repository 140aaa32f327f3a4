"""A profile check: connect, encrypt, log in and quit exactly as the worker would, sending nothing.

:func:`check_profile` opens one connection with :func:`worker.smtp.open_connection`, notes what
the server offers (TLS version, certificate, AUTH mechanisms, SIZE limit) and says QUIT. A
failure is classified like a failed send, with the provider's advice for a refused login, so
``mailworker profiles check`` says what a worker would say, without waiting for a message.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
import structlog
from cryptography import x509

from worker.classify import Failure, FailureKind, ProfileUnusable, Stage, classify
from worker.crypto import PasswordCipher, load_cipher
from worker.errors import SecretKeyError
from worker.hints import provider_hint
from worker.moments import utc_iso
from worker.oauth_tokens import OAuthTokens, RepositoryOpener
from worker.presets import Preset, load_presets
from worker.profiles import Profile
from worker.sentences import N_
from worker.settings import Settings
from worker.smtp import (
    ConnectFailed,
    SmtpSession,
    TokenSource,
    open_connection,
    quit_and_close,
    tls_plan,
)

__all__ = [
    "CheckReport",
    "ServerCertificate",
    "ServerOffer",
    "check_as_worker",
    "check_profile",
    "encryption_words",
]

log = structlog.get_logger("worker.profile_check")


def encryption_words(profile: Profile) -> str:
    """How a connection of this profile is encrypted, in words (from :func:`tls_plan`)."""
    plan = tls_plan(profile)
    if plan.implicit:
        return N_("implicit TLS")
    if plan.starttls:
        return N_("STARTTLS, required")
    if plan.starttls is None:
        return N_("STARTTLS if offered")
    return N_("no encryption")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerCertificate:
    """The certificate the server presented."""

    subject: str
    issuer: str
    names: tuple[str, ...]  # DNS names and addresses it is valid for
    not_after: datetime
    verified: bool  # chain and host name were checked (the profile's verify_tls)

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerOffer:
    """What the server offered on the encrypted connection, after EHLO."""

    tls_version: str | None
    starttls_used: bool
    certificate: ServerCertificate | None
    auth_mechanisms: tuple[str, ...]
    size_limit: int | None  # bytes; None when the server states no SIZE limit
    extensions: tuple[str, ...]
    # The workers use PIPELINING and CHUNKING where offered (MAILWORKER_SMTP_PIPELINING).
    pipelining: bool = True

    @property
    def round_trips(self) -> int:
        """Round trips a message with one recipient costs the worker on this server: one
        with PIPELINING and CHUNKING (:mod:`worker.smtp_pipelining`), two with PIPELINING
        alone (the envelope, then the message after DATA's reply), else four."""
        if not self.pipelining or "PIPELINING" not in self.extensions:
            return 4
        return 1 if "CHUNKING" in self.extensions else 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckReport:
    """The result of one profile check; :meth:`lines` and :meth:`as_dict` present it."""

    profile: Profile
    offer: ServerOffer | None  # None when the check failed before the login succeeded
    failure: Failure | None
    duration_ms: int
    checked_at: datetime

    @property
    def works(self) -> bool:
        return self.failure is None

    @property
    def server(self) -> str:
        return f"{self.profile.host}:{self.profile.port}"

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (never the password)."""
        return {
            "profile": self.profile.name,
            "works": self.works,
            "server": self.server,
            "encryption": encryption_words(self.profile),
            "login": self.profile.login if self.profile.auth_method != "none" else None,
            "offer": None if self.offer is None else _offer_dict(self.offer),
            "failure": None if self.failure is None else _failure_dict(self.failure),
            "paused_until": utc_iso(self._pause_end()),
            "pause_reason": self.profile.pause_reason if self._pause_end() else None,
            "duration_ms": self.duration_ms,
        }

    def lines(self) -> list[str]:
        """The report for a person, one fact a line."""
        profile = self.profile
        if self.works:
            head = f"profile {profile.name!r} works: {self.server} accepted the connection"
            head += " and the login" if profile.auth_method != "none" else " (no login)"
            head += "; no message was sent"
        else:
            head = f"profile {profile.name!r} does NOT work: {self.server}"
        rows = [("server", f"{self.server} ({encryption_words(profile)})")]
        if self.offer is not None:
            rows += _offer_rows(self.offer, self.checked_at)
        if profile.auth_method != "none":
            rows.append(("login", f"{profile.login} ({self._login_verdict()})"))
        if self.failure is not None:
            rows += _failure_rows(self.failure)
        pause_end = self._pause_end()
        if pause_end is not None:
            rows.append(("paused", _pause_words(profile, pause_end)))
        rows.append(("took", f"{self.duration_ms} ms"))
        return [head, *_aligned(rows)]

    def _login_verdict(self) -> str:
        failure = self.failure
        if failure is None:
            return N_("accepted")
        if failure.stage is Stage.AUTH and failure.code is not None:
            return N_("refused by the server")
        return N_("not tried")

    def _pause_end(self) -> datetime | None:
        until = self.profile.paused_until
        return until if until is not None and until > self.checked_at else None


async def check_profile(
    profile: Profile,
    cipher: PasswordCipher | None,
    presets: Mapping[str, Preset],
    *,
    tokens: TokenSource | None = None,
    checked_by: str | None = None,
    pipelining: bool = True,
) -> CheckReport:
    """Connect, encrypt, EHLO, log in and QUIT as ``profile`` says; never sends a message.

    ``cipher`` decrypts the stored password (``None`` is fine for a profile without one);
    an OAuth profile logs in with an access token from ``tokens``, as the worker would.
    Each step waits at most the profile's ``timeout_seconds`` for the server.
    ``checked_by`` (a console user) is logged with the result. ``pipelining``: whether the
    workers use PIPELINING and CHUNKING, for the round trips a message costs.
    """
    started = time.monotonic()
    offer: ServerOffer | None = None
    failure: Failure | None = None
    try:
        session = await open_connection(profile, _password(profile, cipher), tokens=tokens)
    except _NoPassword as exc:
        failure = exc.failure
    except ProfileUnusable as exc:
        failure = classify(exc, Stage.CONNECT)
    except ConnectFailed as exc:
        failure = classify(exc.__cause__ or exc, exc.stage)
    else:
        offer, failure = await _inspect_and_quit(session, profile, pipelining=pipelining)
    if failure is not None:
        failure = provider_hint(failure, profile, presets)
    report = CheckReport(
        profile=profile,
        offer=offer,
        failure=failure,
        duration_ms=round((time.monotonic() - started) * 1000),
        checked_at=datetime.now(UTC),
    )
    _log_report(report, checked_by)
    return report


async def check_as_worker(
    profile: Profile,
    settings: Settings,
    open_repository: RepositoryOpener,
    *,
    checked_by: str | None = None,
) -> CheckReport:
    """:func:`check_profile` with what a worker would use: the secret key (loaded only when
    a stored password or OAuth secret needs it) and, for OAuth, the stored or a renewed token
    (``open_repository`` stores a renewed one for all)."""
    presets = load_presets()
    if profile.auth_method == "oauth2":
        oauth_cipher = load_cipher(settings)
        tokens = OAuthTokens(open_repository, oauth_cipher).of(profile)
        return await check_profile(
            profile,
            oauth_cipher,
            presets,
            tokens=tokens,
            checked_by=checked_by,
            pipelining=settings.smtp_pipelining,
        )
    logs_in = profile.auth_method != "none" and profile.has_password
    cipher = load_cipher(settings) if logs_in else None
    return await check_profile(
        profile, cipher, presets, checked_by=checked_by, pipelining=settings.smtp_pipelining
    )


class _NoPassword(Exception):
    """The profile logs in but has no stored password: nothing to try."""

    def __init__(self, profile: Profile) -> None:
        super().__init__("no password")
        self.failure = Failure(
            kind=FailureKind.PROFILE,
            stage=Stage.AUTH,
            reason=N_("profile %(profile)s logs in as %(user)s but has no stored password")
            % {"profile": profile.name, "user": profile.login},
            hint=N_("give it one: mailworker profiles edit %(profile)s --ask-password")
            % {"profile": profile.name},
        )


def _password(profile: Profile, cipher: PasswordCipher | None) -> str | None:
    if profile.auth_method in {"none", "oauth2"}:
        return None
    if profile.password_encrypted is None:
        raise _NoPassword(profile)
    if cipher is None:
        raise ProfileUnusable(N_("no secret key is configured to decrypt the stored password"))
    try:
        return cipher.decrypt(profile.password_encrypted, profile=profile.name)
    except SecretKeyError as exc:
        raise ProfileUnusable(str(exc)) from None


async def _inspect_and_quit(
    session: SmtpSession, profile: Profile, *, pipelining: bool
) -> tuple[ServerOffer | None, Failure | None]:
    """What the logged-in connection offers; then QUIT and wait until the socket is closed."""
    client = session.client
    try:
        if client.is_ehlo_or_helo_needed:  # a profile without login has not said EHLO yet
            await client.ehlo()
        return _offer(session, profile, pipelining=pipelining), None
    except (aiosmtplib.SMTPException, OSError) as exc:
        return None, classify(exc, Stage.CONNECT)
    finally:
        await quit_and_close(client)


def _offer(session: SmtpSession, profile: Profile, *, pipelining: bool) -> ServerOffer:
    client = session.client
    extensions = client.esmtp_extensions
    size = extensions.get("size", "").strip()
    offers_auth = client.supports_extension("auth")
    return ServerOffer(
        tls_version=session.tls_version,
        starttls_used=session.tls_version is not None and not tls_plan(profile).implicit,
        certificate=_certificate(client, verified=profile.verify_tls),
        auth_mechanisms=tuple(m.upper() for m in client.server_auth_methods) if offers_auth else (),
        size_limit=int(size) if size.isdigit() and int(size) > 0 else None,
        extensions=tuple(sorted(name.upper() for name in extensions)),
        pipelining=pipelining,
    )


def _certificate(client: aiosmtplib.SMTP, *, verified: bool) -> ServerCertificate | None:
    """The server's certificate, read in its binary form.

    ``get_transport_info("peercert")`` is empty when the profile does not verify certificates
    (the TLS context then skips them), but the binary form is always there.
    """
    ssl_object = client.get_transport_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    certificate = x509.load_der_x509_certificate(der)
    return ServerCertificate(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        names=_certificate_names(certificate),
        not_after=certificate.not_valid_after_utc,
        verified=verified,
    )


def _certificate_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = names.get_values_for_type(x509.DNSName)
    addresses = [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    return (*dns, *addresses)


def _log_report(report: CheckReport, checked_by: str | None) -> None:
    offer, failure = report.offer, report.failure
    log.info(
        "profile_checked",
        profile=report.profile.name,
        **({} if checked_by is None else {"by": checked_by}),
        works=report.works,
        stage=None if failure is None else str(failure.stage),
        reason=None if failure is None else failure.reason,
        tls_version=None if offer is None else offer.tls_version,
        duration_ms=report.duration_ms,
    )


# --- presentation ----------------------------------------------------------------------------


def _offer_rows(offer: ServerOffer, now: datetime) -> list[tuple[str, str]]:
    tls = offer.tls_version or "none (unencrypted)"
    rows = [("TLS", f"{tls}; STARTTLS used: {'yes' if offer.starttls_used else 'no'}")]
    certificate = offer.certificate
    if certificate is not None:
        checked = "verified" if certificate.verified else "NOT verified: verify_tls is off"
        rows.append(("certificate", f"{certificate.subject} ({checked})"))
        rows.append(("issuer", certificate.issuer))
        if certificate.names:
            rows.append(("valid for", ", ".join(certificate.names)))
        rows.append(("expires", _expiry_words(certificate, now)))
    mechanisms = " ".join(offer.auth_mechanisms) or "none"
    rows.append(("AUTH offered", mechanisms))
    rows.append(("SIZE limit", _size_words(offer.size_limit)))
    rows.append(("sending", _sending_words(offer)))
    return rows


def _sending_words(offer: ServerOffer) -> str:
    offered = [name for name in ("PIPELINING", "CHUNKING") if name in offer.extensions]
    trips = offer.round_trips
    ways = " and ".join(offered) if offered else "neither PIPELINING nor CHUNKING"
    words = f"{ways}: {trips} round trip{'s' if trips > 1 else ''} a message"
    if offered and not offer.pipelining:
        words += " (the workers do not use them: MAILWORKER_SMTP_PIPELINING=false)"
    return words


def _expiry_words(certificate: ServerCertificate, now: datetime) -> str:
    days = certificate.days_left(now)
    when = utc_iso(certificate.not_after)
    if days < 0:
        return f"{when} (EXPIRED {-days} days ago)"
    warning = " — renew soon" if days < 14 else ""
    return f"{when} (in {days} days{warning})"


def _size_words(size: int | None) -> str:
    if size is None:
        return "not stated"
    return f"{size} bytes ({size / (1024 * 1024):.1f} MiB)"


def _failure_rows(failure: Failure) -> list[tuple[str, str]]:
    rows = [("stage", str(failure.stage)), ("reason", failure.reason)]
    if failure.hint:
        rows.append(("hint", failure.hint))
    return rows


def _pause_words(profile: Profile, until: datetime) -> str:
    reason = f": {profile.pause_reason}" if profile.pause_reason else ""
    return (
        f"until {utc_iso(until)}{reason} (workers try again after the pause;"
        " editing the profile ends it at once)"
    )


def _aligned(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(label) for label, _ in rows) + 1
    return [f"  {label + ':':<{width}} {value}" for label, value in rows]


def _offer_dict(offer: ServerOffer) -> dict[str, Any]:
    certificate = offer.certificate
    return {
        "tls_version": offer.tls_version,
        "starttls_used": offer.starttls_used,
        "certificate": None
        if certificate is None
        else {
            "subject": certificate.subject,
            "issuer": certificate.issuer,
            "names": list(certificate.names),
            "not_after": utc_iso(certificate.not_after),
            "verified": certificate.verified,
        },
        "auth_mechanisms": list(offer.auth_mechanisms),
        "size_limit": offer.size_limit,
        "extensions": list(offer.extensions),
        "round_trips": offer.round_trips,
    }


def _failure_dict(failure: Failure) -> dict[str, Any]:
    return {
        "stage": str(failure.stage),
        "kind": str(failure.kind),
        "reason": failure.reason,
        "code": failure.code,
        "hint": failure.hint,
    }
