"""What a failed send means: the message's problem, the account's problem, or a passing one.

:func:`classify` is pure: it looks at the exception, the stage of the SMTP dialogue where it
happened, and the server's reply (code, enhanced status code and text together — Google's
``550 5.4.5`` daily limit carries a permanent code but is a pause, not a failure).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import socket
import ssl
import traceback

import aiosmtplib

from worker.errors import (
    AppRefused,
    MailWorkerError,
    SignInInvalid,
    TokenEndpointUnavailable,
)
from worker.sentences import N_
from worker.smtp_pipelining import ChunkingRefused

__all__ = [
    "Failure",
    "FailureKind",
    "OAuthTokenRefused",
    "ProfileUnusable",
    "Stage",
    "StartTlsUnavailable",
    "UnencryptedLogin",
    "classify",
    "enhanced_code",
    "pause_class",
]


class Stage(enum.StrEnum):
    """Where in the SMTP dialogue a send failed."""

    BUILD = "build"  # making the MIME message, before any network traffic
    CONNECT = "connect"  # TCP, implicit TLS handshake, greeting
    TLS = "tls"  # STARTTLS
    AUTH = "auth"
    SEND = "send"  # MAIL, RCPT, DATA


class FailureKind(enum.StrEnum):
    TRANSIENT = "transient"  # retry the message later, spending an attempt
    PERMANENT = "permanent"  # fail the message now
    PROFILE = "profile"  # the account or its settings are wrong: pause the profile
    QUOTA = "quota"  # the provider's sending limit: pause the profile for longer


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failure:
    kind: FailureKind
    stage: Stage
    reason: str  # one line for a person: what happened
    code: int | None = None
    enhanced: str | None = None
    hint: str | None = None  # what the person should do, when we know
    about_credentials: bool = False  # the login or password (or the right to log in) is wrong
    daily_limit: bool = False  # the provider's daily quota: no room until its 24 h window frees


class StartTlsUnavailable(MailWorkerError):
    """The server offers no STARTTLS, and the profile must not send its password in clear."""


class UnencryptedLogin(MailWorkerError):
    """The connection is not encrypted, so the profile's password is not sent over it."""


class OAuthTokenRefused(MailWorkerError):
    """The SMTP server refused the profile's OAuth access token, a renewed one as well.

    ``app_only``: the token is the app's own (client credentials, a service account), so the
    mailbox's permission for the app is what to check, not a person's sign-in.
    """

    def __init__(self, message: str, *, profile: str | None = None, app_only: bool = False):
        super().__init__(message)
        self.profile = profile
        self.app_only = app_only


class ProfileUnusable(MailWorkerError):
    """The profile cannot be used as stored (e.g. its password cannot be decrypted)."""


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUOTA_TEXT = re.compile(
    r"sending limit|sending quota|quota exceeded|SubmissionQuota|too many (messages|recipients)",
    re.IGNORECASE,
)
# Gmail: 5.7.8 bad credentials, 5.7.9 app password required, 5.7.14 web sign-in needed;
# Microsoft: 5.7.139 SMTP AUTH disabled, 5.7.30 basic authentication disabled, 5.7.3 generic.
_CREDENTIAL_CODES = {"5.7.8", "5.7.9", "5.7.14", "5.7.139", "5.7.30", "5.7.3"}
CREDENTIALS_HINT = N_("check the login and password of the profile")
# How a pause for the provider's sending limit begins its reason (send-test reads it).
LIMIT_REACHED = N_("the provider's sending limit was reached")
# How the failure of a message whose every recipient the server refused begins its reason.
RECIPIENTS_REFUSED = "every recipient was refused"
_DAILY_TEXT = re.compile(r"daily|per day|SubmissionQuota", re.IGNORECASE)
_QUOTA_CODES = {"5.4.5", "4.4.5", "4.5.3", "5.5.3", "4.3.2", "4.2.1"}
# OpenSSL's errors read "[SSL: CERTIFICATE_VERIFY_FAILED] ..."; a bare "ssl" would also match
# host names such as ssl0.ovh.net in a refused connection's text.
_CERTIFICATE_TEXT = re.compile(r"CERTIFICATE_VERIFY_FAILED|WRONG_VERSION_NUMBER|\[SSL\b")


def enhanced_code(text: str) -> str | None:
    """The RFC 3463 status code in a reply text (``5.7.8``), if there is one."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def classify(exc: BaseException, stage: Stage) -> Failure:
    """Turn an exception raised while sending into a :class:`Failure` (no I/O)."""
    rules = (
        _oauth_failure,
        _tls_failure,
        _dns_failure,
        _chunking_refused,
        _reply_failure,
        _setup_failure,
        _refused_by_client,  # aiosmtplib's ValueError: this message, refused on every attempt
        _connection_failure,
    )
    for rule in rules:
        failure = rule(exc, stage)
        if failure is not None:
            return failure
    return Failure(kind=FailureKind.TRANSIENT, stage=stage, reason=f"{type(exc).__name__}: {exc}")


# How a pause for a sign-in that needs a person begins its reason (pause_class reads it).
SIGN_IN_INVALID = "the OAuth 2.0 sign-in"


def _oauth_failure(exc: BaseException, stage: Stage) -> Failure | None:
    """A token could not be had, or the server refused it: the account's trouble, never the
    message's, so the profile pauses and no attempt is spent."""
    if isinstance(exc, TokenEndpointUnavailable):
        return Failure(
            kind=FailureKind.PROFILE,
            stage=stage,
            # The exception's text is our own sentence around the provider's words: a reason.
            reason=N_("cannot reach the provider's sign-in service: %(reason)s")
            % {"reason": _one_line(str(exc))},
            hint=N_("tried again after the pause; check the network path to the provider"),
        )
    if isinstance(exc, SignInInvalid | OAuthTokenRefused):
        return Failure(
            kind=FailureKind.PROFILE,
            stage=stage,
            reason=N_("the OAuth 2.0 sign-in was refused: %(reason)s")
            % {"reason": _one_line(str(exc))},
            hint=_authorize_hint(exc),
            code=_reply_code(exc),
            enhanced=enhanced_code(str(exc)),
            about_credentials=True,
        )
    if isinstance(exc, AppRefused):
        return Failure(
            kind=FailureKind.PROFILE,
            stage=stage,
            reason=_one_line(str(exc)),
            hint=N_(
                "check the profile's OAuth client id, secret, certificate or key (docs/oauth.md)"
            ),
            about_credentials=True,
        )
    return None


def _authorize_hint(exc: BaseException) -> str:
    if enhanced_code(str(exc)) == "5.7.139":
        return N_("SMTP AUTH is off for the mailbox: an admin must switch it on (docs/oauth.md)")
    if getattr(exc, "app_only", False):
        return N_(
            "the app may not send as this mailbox: check its permission (Exchange service"
            " principal, or the domain-wide delegation of the service account; docs/oauth.md)"
        )
    profile = getattr(exc, "profile", None) or "PROFILE"
    return N_("authorise again: mailworker profiles authorize %(profile)s (docs/oauth.md)") % {
        "profile": profile
    }


def _reply_code(exc: BaseException) -> int | None:
    code = str(exc)[:3]
    return int(code) if code.isdigit() else None


def _tls_failure(exc: BaseException, stage: Stage) -> Failure | None:
    if isinstance(exc, StartTlsUnavailable):
        return Failure(
            kind=FailureKind.PROFILE,
            stage=stage,
            reason=str(exc),
            hint=N_("use port 465 with encryption ssl, or a server that offers STARTTLS"),
        )
    if isinstance(exc, UnencryptedLogin):
        return Failure(
            kind=FailureKind.PROFILE,
            stage=stage,
            reason=str(exc),
            hint=N_("set the profile's encryption to ssl, starttls or auto"),
        )
    certificate = (
        isinstance(exc, ssl.SSLError)
        or isinstance(exc.__cause__, ssl.SSLError)
        or (isinstance(exc, aiosmtplib.SMTPConnectError) and _CERTIFICATE_TEXT.search(str(exc)))
    )
    if not certificate:
        return None
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text:
        hint = N_("the port does not speak implicit TLS: use starttls for 587/25, ssl for 465")
    else:
        hint = N_("check the host name, or name the CA that signs the server's certificate")
    return Failure(
        kind=FailureKind.PROFILE,
        stage=stage,
        reason=N_("TLS failed: %(reply)s") % {"reply": _one_line(text)},
        hint=hint,
    )


def _dns_failure(exc: BaseException, stage: Stage) -> Failure | None:
    cause = exc.__cause__ or exc.__context__
    unknown_host = isinstance(exc, socket.gaierror) or isinstance(cause, socket.gaierror)
    # aiosmtplib wraps the OSError in an SMTPConnectError without its errno.
    unreachable = any(
        isinstance(error, OSError) and error.errno in {101, 113}  # ENETUNREACH, EHOSTUNREACH
        for error in (exc, cause)
    )
    if not (unknown_host or unreachable):
        return None
    if unknown_host:
        reason = N_("cannot reach the SMTP server (unknown host): %(reply)s")
    else:
        reason = N_("cannot reach the SMTP server (host unreachable): %(reply)s")
    return Failure(
        kind=FailureKind.PROFILE,
        stage=stage,
        reason=reason % {"reply": _one_line(str(exc))},
        hint=N_("check the server name in the profile"),
    )


def _chunking_refused(exc: BaseException, stage: Stage) -> Failure | None:
    """CHUNKING offered but BDAT unknown: the server's fault, not the message's. The profile
    sends without CHUNKING from now on, so the retry goes the classic way."""
    if not isinstance(exc, ChunkingRefused):
        return None
    return Failure(kind=FailureKind.TRANSIENT, stage=stage, reason=exc.message, code=exc.code)


def _reply_failure(exc: BaseException, stage: Stage) -> Failure | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _all_recipients_refused(exc, stage)
    if not isinstance(exc, aiosmtplib.SMTPResponseException):
        return None
    code, text = exc.code, _one_line(exc.message)
    enhanced = enhanced_code(text)
    reason = f"{code} {text}"
    if _is_quota(code, enhanced, text, stage):
        daily = enhanced == "5.4.5" or bool(_DAILY_TEXT.search(text))
        return Failure(
            kind=FailureKind.QUOTA,
            stage=stage,
            reason=N_("the provider's sending limit was reached: %(reply)s") % {"reply": reason},
            code=code,
            enhanced=enhanced,
            hint=N_("wait until the provider's window frees, or lower the profile's cap"),
            daily_limit=daily,
        )
    credentials = _about_credentials(exc, code, enhanced)
    kind = FailureKind.PROFILE if credentials else _reply_kind(exc, code, stage)
    hint = CREDENTIALS_HINT if credentials else _reply_hint(exc, code)
    return Failure(
        kind=kind,
        stage=stage,
        reason=reason,
        code=code,
        enhanced=enhanced,
        hint=hint,
        about_credentials=credentials,
    )


def _about_credentials(
    exc: aiosmtplib.SMTPResponseException, code: int, enhanced: str | None
) -> bool:
    """The login, the password or the account's permission to log in is the problem."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and code >= 500:
        return True
    return code == 530 or enhanced in _CREDENTIAL_CODES


def _reply_kind(exc: aiosmtplib.SMTPResponseException, code: int, stage: Stage) -> FailureKind:
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError):
        # The greeting or EHLO refused: the server will not serve this account (or this
        # client) at all, whichever message comes; a 4xx there is passing trouble.
        return FailureKind.TRANSIENT if code < 500 else FailureKind.PROFILE
    if (
        isinstance(exc, aiosmtplib.SMTPAuthenticationError)
        or stage in {Stage.TLS, Stage.AUTH}  # STARTTLS or AUTH refused: the profile's set-up
        or code == 530  # authentication required: the profile is set up without AUTH
    ):
        return FailureKind.PROFILE
    if _too_large(exc, code):
        return FailureKind.PERMANENT
    if isinstance(exc, aiosmtplib.SMTPSenderRefused) and code >= 500:
        # MAIL FROM is the profile's own address: every message of the profile would fail.
        return FailureKind.PROFILE
    return FailureKind.TRANSIENT if code < 500 else FailureKind.PERMANENT


def _too_large(exc: aiosmtplib.SMTPResponseException, code: int) -> bool:
    """MAIL refused for the SIZE the client declared (RFC 1870): this message, not the sender."""
    return isinstance(exc, aiosmtplib.SMTPSenderRefused) and (
        code == 552 or enhanced_code(exc.message) == "5.3.4"
    )


def _reply_hint(exc: aiosmtplib.SMTPResponseException, code: int) -> str | None:
    if _too_large(exc, code):
        return N_("the message is larger than the server accepts (its SIZE limit)")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused) and code >= 500:
        return N_("the server does not accept the profile's outgoing address as sender")
    return None


def _all_recipients_refused(exc: aiosmtplib.SMTPRecipientsRefused, stage: Stage) -> Failure:
    for refused in exc.recipients:  # "too many recipients" and the like: the provider's limit
        quota = _reply_failure(refused, stage)
        if quota is not None and quota.kind is FailureKind.QUOTA:
            return quota
    refusals = [f"{r.recipient}: {r.code} {_one_line(r.message)}" for r in exc.recipients]
    temporary = any(r.code < 500 for r in exc.recipients)
    return Failure(
        kind=FailureKind.TRANSIENT if temporary else FailureKind.PERMANENT,
        stage=stage,
        reason=N_("every recipient was refused: %(replies)s") % {"replies": "; ".join(refusals)},
        code=exc.recipients[0].code if exc.recipients else None,
    )


def _setup_failure(exc: BaseException, stage: Stage) -> Failure | None:
    """The message or the profile cannot work as they are, whatever the server says."""
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return Failure(kind=FailureKind.PERMANENT, stage=stage, reason=str(exc))
    if isinstance(exc, MailWorkerError) and stage is Stage.BUILD:
        return Failure(kind=FailureKind.PERMANENT, stage=stage, reason=str(exc))
    if isinstance(exc, ProfileUnusable):
        return Failure(kind=FailureKind.PROFILE, stage=stage, reason=str(exc))
    if isinstance(exc, aiosmtplib.SMTPException) and "AUTH extension" in str(exc):
        return Failure(
            kind=FailureKind.PROFILE,
            stage=stage,
            reason=N_("the server does not offer authentication (AUTH) on this connection"),
            hint=N_("use encryption ssl or starttls; many servers offer AUTH only over TLS"),
        )
    return None


def _refused_by_client(exc: BaseException, stage: Stage) -> Failure | None:
    """aiosmtplib refused the envelope itself (an address no SMTP command can carry).

    It checks the addresses before they go on the wire and raises ValueError: the same message
    is refused the same way on every attempt, so retrying it only wastes the attempts.
    """
    if stage is not Stage.SEND or not isinstance(exc, ValueError):
        return None
    if not _raised_in_smtp_client(exc):
        return None  # our own bug: retried like any unknown error, not blamed on the message
    return Failure(
        kind=FailureKind.PERMANENT,
        stage=stage,
        reason=N_("the message cannot be sent as it is: %(reply)s")
        % {"reply": _one_line(str(exc))},
    )


def _raised_in_smtp_client(exc: BaseException) -> bool:
    """Whether aiosmtplib's code is on the path that raised ``exc`` (its traceback)."""
    return any(
        str(frame.f_globals.get("__name__", "")).partition(".")[0] == "aiosmtplib"
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _connection_failure(exc: BaseException, stage: Stage) -> Failure | None:
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Failure(
            kind=FailureKind.TRANSIENT,
            stage=stage,
            reason=N_("the server did not answer in time (%(stage)s stage)") % {"stage": stage},
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return Failure(
            kind=FailureKind.TRANSIENT,
            stage=stage,
            reason=N_("the connection was lost (%(stage)s stage): %(reply)s")
            % {"stage": stage, "reply": _one_line(str(exc))},
        )
    return None


def _is_quota(code: int, enhanced: str | None, text: str, stage: Stage) -> bool:
    if enhanced in _QUOTA_CODES:
        return True
    # Google: rate limited / too many logins. Not at STARTTLS, where 454 4.7.0 is RFC 3207's
    # "TLS not available".
    if enhanced == "4.7.0" and code in {421, 454} and stage is not Stage.TLS:
        return True
    return code in {421, 450, 451, 452, 550, 554} and bool(_QUOTA_TEXT.search(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())


# The kinds of reason a profile is paused for, as metrics label them: a small, fixed set.
PAUSE_CLASSES = (
    "credentials",
    "authorization",
    "provider_limit",
    "tls",
    "unreachable",
    "password_unreadable",
    "refused",
    "other",
)
_PAUSE_TEXTS = (
    ("provider_limit", re.compile(re.escape(LIMIT_REACHED))),
    ("authorization", re.compile(re.escape(SIGN_IN_INVALID))),
    ("password_unreadable", re.compile(r"cannot be decrypted")),
    ("tls", re.compile(r"TLS failed|STARTTLS|unencrypted connection|offers no STARTTLS")),
    (
        "unreachable",
        re.compile(
            r"cannot reach the SMTP server|did not answer in time|connection was lost"
            r"|cannot reach the provider's sign-in service"
        ),
    ),
)


def pause_class(reason: str) -> str:
    """The kind of a pause's reason (one of :data:`PAUSE_CLASSES`), from its words alone."""
    for name, pattern in _PAUSE_TEXTS:
        if pattern.search(reason):
            return name
    code = reason[:3]
    if code in {"530", "534", "535"} or enhanced_code(reason) in _CREDENTIAL_CODES:
        return "credentials"
    if code.isdigit() and code[0] in "45":
        return "refused"
    return "other"
