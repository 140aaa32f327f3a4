"""Every classification rule of the delivery engine, through a real server that misbehaves.

Each case starts a test server (``tests/kit/smtp_server.py``) with a scripted fault or a setting
that provokes one rule of ``worker/classify.py``, makes a profile that sends through it, inserts
one message and runs a real in-process worker until nothing is due. It then checks what the
service did, as docs/delivery.md ("What each failure means") says it should:

- passing trouble: the message stays ``pending`` with ``waiting to retry at …: <reason>`` and one
  attempt spent (the retry backoff is long here, so the worker stops after the first attempt);
- the message is wrong: ``failed`` at once with the reply;
- the account or its settings, the provider's limit: the profile is paused
  (``mail.profile.paused_until``), the message waits as ``pending`` with no attempt spent.

and the attempt recorded in ``mail.attempt`` (outcome, SMTP code, and the stage where the
reason names it).

Every case runs against three servers, as the worker sends differently to each
(``worker/smtp_pipelining.py``): one offering neither PIPELINING nor CHUNKING (MAIL, RCPT and
DATA, each after the reply before it), one offering PIPELINING (the envelope and DATA in one
write), and one offering CHUNKING too (the envelope and ``BDAT ... LAST`` with the message in
one write). A fault at DATA is a fault at BDAT for the last. The classification must not
depend on the mode; a few cases exist only where a server offers the extensions.

Rules that the server kit cannot reach are listed at the end of the table, with the reason.
"""

from __future__ import annotations

import dataclasses
import errno
import re
from collections.abc import Mapping
from typing import Any

import pytest

from tests.kit.database import sql
from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import Action, Stage
from worker.settings import Settings

pytestmark = pytest.mark.timeout(30)

# Retries far off: a retried message is still pending when the worker finds nothing due.
RETRY_SETTINGS: Mapping[str, Any] = {"retry_base": 600.0, "retry_cap": 600.0}
PAUSE_BASE = 60.0  # the first pause of a profile (MAILWORKER_PAUSE_BASE's default)
RATE_LIMIT_PAUSE = 600.0  # worker.retry.RetryPolicy.rate_limit_pause
DAY = 86400.0  # a daily limit with no recent sends: the provider's window frees in a day

SMTPS: Mapping[str, Any] = {"tls": "implicit", "accounts": {SMTP_LOGIN: SMTP_PASSWORD}}
STARTTLS: Mapping[str, Any] = {"tls": "starttls", "accounts": {SMTP_LOGIN: SMTP_PASSWORD}}
RELAY: Mapping[str, Any] = {"tls": "none"}
SSL: Mapping[str, Any] = {"encryption": "ssl"}

RECIPIENT = "odbiorca@example.com"
UNROUTABLE = "2001:db8::1"  # RFC 3849 documentation prefix: no route leads there
UNREACHABLE_ERROR = rf"\[Errno ({errno.ENETUNREACH}|{errno.EHOSTUNREACH})\]|unreachable"
CREDENTIALS_HINT = r" \(hint: check the login and password of the profile\)$"

# status_reason of a message, up to the reason (timestamps vary)
RETRY = r"waiting to retry at \S+Z: "
PAUSED = r"waiting: profile test paused until \S+Z: "
FAILED = r"failed: "
LIMIT = re.escape("the provider's sending limit was reached: ")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fault:
    """One rule of the server's script."""

    stage: Stage
    reply: str | None = None
    action: Action | None = None
    rcpt: str | None = None
    seconds: float = 30.0
    after_bytes: int | None = None  # BDAT: cut the line this many octets into the chunk


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pause:
    """The profile's pause: about how long, and its reason (a regex matched at the start)."""

    seconds: float
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    """A fault, and what the service must do about it."""

    rule: str  # the test id: which rule of classify.py this case exercises
    server: Mapping[str, Any] = dataclasses.field(default_factory=lambda: SMTPS)
    profile: Mapping[str, Any] = dataclasses.field(default_factory=lambda: SSL)
    faults: tuple[Fault, ...] = ()
    message: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    stop_server: bool = False  # nothing listens on the profile's port
    unroutable: bool = False  # the host is UNROUTABLE: skip where the machine does not say so
    # expected
    status: str
    reason: str  # regex matched at the start of the row's status_reason
    outcome: str  # of the one attempt recorded
    code: int | None = None  # the attempt's smtp_code
    pause: Pause | None = None  # None: the profile must not be paused
    received: int = 0  # messages the server recorded
    logins: int | None = None  # AUTH commands the server saw, when that is part of the rule
    marks: tuple[pytest.MarkDecorator, ...] = ()
    modes: tuple[str, ...] = ("classic", "pipelining", "chunking")  # where the rule can happen


def _retried(**fields: Any) -> dict[str, Any]:
    return {"status": "pending", "outcome": "retry", **fields}


def _failed(**fields: Any) -> dict[str, Any]:
    return {"status": "failed", "outcome": "failed", **fields}


def _paused(**fields: Any) -> dict[str, Any]:
    return {"status": "pending", "outcome": "deferred", **fields}


def _lost(stage: str) -> str:
    return RETRY + re.escape(f"the connection was lost ({stage} stage): ")


CASES: tuple[Case, ...] = (
    # --- _tls_failure -------------------------------------------------------------------------
    Case(
        rule="tls-starttls-not-offered-pauses",
        server={"tls": "none", "accounts": {SMTP_LOGIN: SMTP_PASSWORD}},
        profile={"encryption": "starttls"},
        **_paused(
            reason=PAUSED + r"localhost:\d+ offers no STARTTLS; the password will not be sent"
            r" over an unencrypted connection \(hint: use port 465 with encryption ssl, or a"
            r" server that offers STARTTLS\)$",
            pause=Pause(seconds=PAUSE_BASE, reason=r"localhost:\d+ offers no STARTTLS"),
            logins=0,
        ),
    ),
    Case(
        rule="tls-untrusted-certificate-pauses",
        server={**SMTPS, "certificate": "self_signed"},
        **_paused(
            reason=PAUSED + r"TLS failed: .*CERTIFICATE_VERIFY_FAILED.* \(hint: check the host"
            r" name, or name the CA that signs the server's certificate\)$",
            pause=Pause(seconds=PAUSE_BASE, reason="TLS failed: "),
            logins=0,
        ),
    ),
    Case(
        rule="tls-starttls-handshake-certificate-pauses",
        server={**STARTTLS, "certificate": "expired"},
        profile={"encryption": "starttls"},
        **_paused(
            reason=PAUSED + r"TLS failed: .*certificate has expired.* \(hint: check the host"
            r" name, or name the CA that signs the server's certificate\)$",
            pause=Pause(seconds=PAUSE_BASE, reason="TLS failed: "),
            logins=0,
        ),
    ),
    Case(
        rule="tls-implicit-tls-to-a-plain-port-pauses",
        server=RELAY,
        profile=SSL,
        **_paused(
            reason=PAUSED + r"TLS failed: .*WRONG_VERSION_NUMBER.* \(hint: the port does not"
            r" speak implicit TLS: use starttls for 587/25, ssl for 465\)$",
            pause=Pause(seconds=PAUSE_BASE, reason="TLS failed: "),
        ),
    ),
    # --- _dns_failure -------------------------------------------------------------------------
    Case(
        rule="dns-unknown-host-pauses",
        profile={**SSL, "host": "nonexistent.invalid"},
        **_paused(
            reason=PAUSED + re.escape("cannot reach the SMTP server (unknown host): ") + r".*"
            r" \(hint: check the server name in the profile\)$",
            pause=Pause(seconds=PAUSE_BASE, reason=r"cannot reach the SMTP server \(unknown"),
            logins=0,
        ),
    ),
    Case(
        rule="dns-host-unreachable-pauses",
        profile={**SSL, "host": UNROUTABLE},
        unroutable=True,
        **_paused(
            reason=PAUSED + re.escape("cannot reach the SMTP server (host unreachable): "),
            pause=Pause(seconds=PAUSE_BASE, reason=r"cannot reach the SMTP server \(host"),
            logins=0,
        ),
    ),
    # --- _reply_failure: recipients -----------------------------------------------------------
    Case(
        rule="rcpt-every-recipient-refused-5xx-fails",
        faults=(Fault(stage="RCPT", reply="550 5.1.1 No such user"),),
        **_failed(
            reason=FAILED
            + re.escape(f"every recipient was refused: {RECIPIENT}: 550 5.1.1 No")
            + r" such user$",
            code=550,
        ),
    ),
    Case(
        rule="rcpt-every-recipient-refused-one-4xx-retries",
        message={"to_addrs": ["a@example.com", "b@example.com"]},
        faults=(
            Fault(stage="RCPT", rcpt="a@example.com", reply="450 4.2.0 Mailbox busy"),
            Fault(stage="RCPT", rcpt="b@example.com", reply="550 5.1.1 No such user"),
        ),
        **_retried(
            reason=RETRY
            + re.escape(
                "every recipient was refused: a@example.com: 450 4.2.0 Mailbox busy;"
                " b@example.com: 550 5.1.1 No such user"
            )
            + "$",
            code=450,
        ),
    ),
    Case(
        rule="rcpt-one-of-several-refused-is-sent",
        message={"to_addrs": ["a@example.com", "bad@example.com", "c@example.com"]},
        faults=(Fault(stage="RCPT", rcpt="bad@example.com", reply="550 5.1.1 No such user"),),
        status="sent",
        reason=re.escape("sent; 1 of 3 recipients refused: bad@example.com: 550 5.1.1 No such")
        + " user$",
        outcome="partial",
        code=250,
        received=1,
    ),
    # --- _reply_failure: the provider's limit -------------------------------------------------
    # docs/delivery.md, "Send caps": a daily limit pauses until the oldest send of 24 h ages
    # out (a day when there is none), a rate limit for rate_limit_pause (10 min). (Its table
    # under "What each failure means" says "an hour" for both.)
    Case(
        rule="quota-5.4.5-daily-limit-pauses-for-the-day",
        faults=(
            Fault(
                stage="DATA_END",
                reply="550-5.4.5 Daily user sending limit exceeded.\n"
                "550 5.4.5 For more information go to support - gsmtp",
            ),
        ),
        **_paused(
            reason=PAUSED + LIMIT + re.escape("550 5.4.5 Daily user sending limit exceeded."),
            code=550,
            pause=Pause(seconds=DAY, reason=LIMIT + "550 5.4.5 "),
        ),
    ),
    Case(
        rule="quota-SubmissionQuota-text-pauses-for-the-day",
        faults=(
            Fault(
                stage="DATA_END",
                reply="554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException;"
                " Failed to process message due to a permanent exception",
            ),
        ),
        **_paused(
            reason=PAUSED + LIMIT + re.escape("554 5.2.0 STOREDRV.Submission.Exception:"),
            code=554,
            pause=Pause(seconds=DAY, reason=LIMIT + "554 5.2.0 "),
        ),
    ),
    Case(
        rule="quota-421-4.7.0-pauses-for-the-rate-limit",
        faults=(Fault(stage="MAIL", reply="421 4.7.0 Try again later, closing connection."),),
        **_paused(
            reason=PAUSED + LIMIT + re.escape("421 4.7.0 Try again later, closing connection."),
            code=421,
            pause=Pause(seconds=RATE_LIMIT_PAUSE, reason=LIMIT + "421 4.7.0 "),
        ),
    ),
    Case(
        rule="quota-454-4.7.0-at-auth-pauses-for-the-rate-limit",
        faults=(
            Fault(stage="AUTH", reply="454 4.7.0 Too many login attempts, please try again later."),
        ),
        **_paused(
            reason=PAUSED + LIMIT + re.escape("454 4.7.0 Too many login attempts"),
            code=454,
            pause=Pause(seconds=RATE_LIMIT_PAUSE, reason=LIMIT + "454 4.7.0 "),
            logins=1,
        ),
    ),
    Case(
        rule="quota-4.3.2-code-pauses-for-the-rate-limit",
        faults=(
            Fault(
                stage="MAIL",
                reply="432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            ),
        ),
        **_paused(
            reason=PAUSED + LIMIT + re.escape("432 4.3.2 STOREDRV.ClientSubmit;"),
            code=432,
            pause=Pause(seconds=RATE_LIMIT_PAUSE, reason=LIMIT + "432 4.3.2 "),
        ),
    ),
    Case(
        rule="quota-452-4.5.3-at-rcpt-pauses-for-the-rate-limit",
        faults=(Fault(stage="RCPT", reply="452 4.5.3 Your message has too many recipients"),),
        **_paused(
            reason=PAUSED + LIMIT + re.escape("452 4.5.3 Your message has too many recipients"),
            code=452,
            pause=Pause(seconds=RATE_LIMIT_PAUSE, reason=LIMIT + "452 4.5.3 "),
        ),
    ),
    # --- _reply_failure: the account ----------------------------------------------------------
    Case(
        rule="credentials-535-5.7.8-wrong-password-pauses",
        profile={**SSL, "password": "wrong-password"},
        **_paused(
            reason=PAUSED + r"535 5\.7\.8 .*" + CREDENTIALS_HINT,
            code=535,
            pause=Pause(seconds=PAUSE_BASE, reason=r"535 5\.7\.8 "),
            logins=1,
        ),
    ),
    Case(
        rule="credentials-534-5.7.9-app-password-required-pauses",
        server={
            **SMTPS,
            "auth_replies": {
                SMTP_LOGIN: "534-5.7.9 Application-specific password required.\n"
                "534 5.7.9 Learn more at support - gsmtp"
            },
        },
        **_paused(
            reason=PAUSED
            + re.escape("534 5.7.9 Application-specific password required.")
            + r".*"
            + CREDENTIALS_HINT,
            code=534,
            pause=Pause(seconds=PAUSE_BASE, reason=r"534 5\.7\.9 "),
            logins=1,
        ),
    ),
    Case(
        rule="credentials-5.7.139-smtp-auth-disabled-pauses",
        server={
            **SMTPS,
            "auth_replies": {
                SMTP_LOGIN: "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication"
                " is disabled for the Tenant."
            },
        },
        **_paused(
            reason=PAUSED
            + re.escape("535 5.7.139 Authentication unsuccessful,")
            + r".*"
            + CREDENTIALS_HINT,
            code=535,
            pause=Pause(seconds=PAUSE_BASE, reason=r"535 5\.7\.139 "),
            logins=1,
        ),
    ),
    Case(
        rule="credentials-5xx-at-auth-without-enhanced-code-pauses",
        server={**SMTPS, "bad_credentials_reply": "535 Authentication failed"},
        profile={**SSL, "password": "wrong-password"},
        **_paused(
            reason=PAUSED + re.escape("535 Authentication failed") + CREDENTIALS_HINT,
            code=535,
            pause=Pause(seconds=PAUSE_BASE, reason="535 Authentication failed"),
            logins=1,
        ),
    ),
    Case(
        rule="credentials-code-at-mail-pauses",
        faults=(
            Fault(
                stage="MAIL",
                reply="550 5.7.30 Basic authentication is not supported for Client Submission.",
            ),
        ),
        **_paused(
            reason=PAUSED
            + re.escape("550 5.7.30 Basic authentication is not supported")
            + r".*"
            + CREDENTIALS_HINT,
            code=550,
            pause=Pause(seconds=PAUSE_BASE, reason=r"550 5\.7\.30 "),
        ),
    ),
    Case(
        rule="auth-required-530-pauses",
        profile={**SSL, "login": None, "password": None},
        **_paused(
            reason=PAUSED + r"530 .*" + CREDENTIALS_HINT,
            code=530,
            pause=Pause(seconds=PAUSE_BASE, reason="530 "),
            logins=0,
        ),
    ),
    Case(
        # Any refusal of AUTH pauses the profile (one login per pause), a 4xx one as well.
        rule="auth-temporary-refusal-pauses",
        faults=(Fault(stage="AUTH", reply="454 4.3.0 Temporary authentication failure"),),
        **_paused(
            reason=PAUSED + re.escape("454 4.3.0 Temporary authentication failure") + "$",
            code=454,
            pause=Pause(seconds=PAUSE_BASE, reason=r"454 4\.3\.0 "),
            logins=1,
        ),
    ),
    # --- _reply_failure: MAIL FROM ------------------------------------------------------------
    Case(
        rule="size-552-at-mail-fails",
        server={**SMTPS, "size_limit": 300},
        **_failed(reason=FAILED + "552 ", code=552),
    ),
    Case(
        rule="size-5.3.4-at-mail-fails",
        faults=(Fault(stage="MAIL", reply="554 5.3.4 Message too big for system"),),
        **_failed(
            reason=FAILED + re.escape("554 5.3.4 Message too big for system") + "$", code=554
        ),
    ),
    Case(
        rule="sender-refused-5xx-at-mail-pauses",
        faults=(Fault(stage="MAIL", reply="553 5.7.1 Sender address rejected: not owned by user"),),
        **_paused(
            reason=PAUSED
            + re.escape(
                "553 5.7.1 Sender address rejected: not owned by user (hint: the server does"
                " not accept the profile's outgoing address as sender)"
            )
            + "$",
            code=553,
            pause=Pause(seconds=PAUSE_BASE, reason=r"553 5\.7\.1 "),
        ),
    ),
    Case(
        rule="reply-4xx-at-mail-retries",
        faults=(Fault(stage="MAIL", reply="451 4.3.0 Temporary failure, try later"),),
        **_retried(
            reason=RETRY + re.escape("451 4.3.0 Temporary failure, try later") + "$", code=451
        ),
    ),
    # --- _reply_failure: DATA -----------------------------------------------------------------
    Case(
        rule="reply-4xx-at-data-end-retries",
        faults=(Fault(stage="DATA_END", reply="451 4.3.0 Temporary failure, try later"),),
        **_retried(
            reason=RETRY + re.escape("451 4.3.0 Temporary failure, try later") + "$", code=451
        ),
    ),
    Case(
        rule="reply-5xx-at-data-end-fails",
        faults=(Fault(stage="DATA_END", reply="554 5.6.0 Message content rejected"),),
        **_failed(reason=FAILED + re.escape("554 5.6.0 Message content rejected") + "$", code=554),
    ),
    # --- _reply_failure: greeting, EHLO, STARTTLS ---------------------------------------------
    Case(
        rule="greeting-421-retries",
        faults=(
            Fault(stage="CONNECT", reply="421 4.3.0 Temporary System Problem. Try again later"),
        ),
        **_retried(
            reason=RETRY + re.escape("421 4.3.0 Temporary System Problem. Try again later") + "$",
            code=421,
        ),
    ),
    Case(
        # docs/delivery.md names no greeting reply; a 5xx one fails the message like any 5xx,
        # though it says nothing about the message: every queued message would fail alike.
        # A refusal at the greeting says nothing about the message: every message of the
        # profile would meet it.
        rule="greeting-554-pauses",
        faults=(Fault(stage="CONNECT", reply="554 5.7.1 Service unavailable; client blocked"),),
        **_paused(
            reason=PAUSED + re.escape("554 5.7.1 Service unavailable; client blocked") + "$",
            code=554,
            pause=Pause(seconds=PAUSE_BASE, reason=r"554 5\.7\.1 "),
            logins=0,
        ),
    ),
    Case(
        # EHLO refused with 5xx: the server will not serve this client, whatever the message.
        rule="ehlo-5xx-pauses",
        faults=(Fault(stage="EHLO", reply="550 5.7.1 Access denied"),),
        **_paused(
            reason=PAUSED + re.escape("550 5.7.1 Access denied") + "$",
            code=550,
            pause=Pause(seconds=PAUSE_BASE, reason=r"550 5\.7\.1 "),
            logins=0,
        ),
    ),
    Case(
        rule="ehlo-4xx-retries",
        faults=(Fault(stage="EHLO", reply="451 4.3.0 Temporary failure, try later"),),
        **_retried(
            reason=RETRY + re.escape("451 4.3.0 Temporary failure, try later") + "$", code=451
        ),
    ),
    Case(
        rule="starttls-454-refused-pauses",
        server=STARTTLS,
        profile={"encryption": "starttls"},
        faults=(Fault(stage="STARTTLS", reply="454 4.7.0 TLS not available due to local problem"),),
        **_paused(
            reason=PAUSED + re.escape("454 4.7.0 TLS not available due to local problem") + "$",
            code=454,
            pause=Pause(seconds=PAUSE_BASE, reason=r"454 4\.7\.0 TLS"),
            logins=0,
        ),
    ),
    # --- _setup_failure -----------------------------------------------------------------------
    Case(
        rule="setup-message-cannot-be-built-fails",
        message={"headers": {"From": "someone@example.com"}},
        **_failed(reason=FAILED + r"extra header 'From'", code=None),
    ),
    Case(
        rule="setup-password-cannot-be-decrypted-pauses",
        profile={**SSL, "password_encrypted": b"not a token of this key"},
        **_paused(
            reason=PAUSED,
            pause=Pause(seconds=PAUSE_BASE, reason=""),
            logins=0,
        ),
    ),
    Case(
        rule="setup-auth-not-offered-pauses",
        server={"tls": "implicit"},
        **_paused(
            reason=PAUSED
            + re.escape(
                "the server does not offer authentication (AUTH) on this connection (hint: use"
                " encryption ssl or starttls; many servers offer AUTH only over TLS)"
            )
            + "$",
            pause=Pause(seconds=PAUSE_BASE, reason="the server does not offer authentication"),
            logins=0,
        ),
    ),
    # --- _connection_failure ------------------------------------------------------------------
    Case(
        rule="connect-refused-retries",
        stop_server=True,
        **_retried(reason=_lost("connect") + "Error connecting to localhost"),
    ),
    Case(
        rule="timeout-stall-at-greeting-retries",
        profile={**SSL, "timeout_seconds": 1},
        faults=(Fault(stage="CONNECT", action="stall", seconds=3),),
        **_retried(reason=RETRY + re.escape("the server did not answer in time (connect stage)")),
    ),
    Case(
        rule="timeout-stall-at-mail-retries",
        profile={**SSL, "timeout_seconds": 1},
        faults=(Fault(stage="MAIL", action="stall", seconds=3),),
        **_retried(reason=RETRY + re.escape("the server did not answer in time (send stage)")),
    ),
    Case(
        rule="drop-at-greeting-retries",
        faults=(Fault(stage="CONNECT", action="drop"),),
        **_retried(reason=_lost("connect")),
    ),
    Case(
        rule="drop-at-ehlo-retries",
        faults=(Fault(stage="EHLO", action="drop"),),
        # EHLO goes out just before the login (implicit TLS): the auth stage.
        **_retried(reason=_lost("auth"), logins=0),
    ),
    Case(
        rule="drop-at-auth-retries",
        faults=(Fault(stage="AUTH", action="drop"),),
        **_retried(reason=_lost("auth")),
    ),
    Case(
        rule="drop-at-mail-retries",
        faults=(Fault(stage="MAIL", action="drop"),),
        **_retried(reason=_lost("send")),
    ),
    Case(
        rule="drop-at-rcpt-retries",
        faults=(Fault(stage="RCPT", action="drop"),),
        **_retried(reason=_lost("send")),
    ),
    Case(
        rule="drop-at-data-retries",
        faults=(Fault(stage="DATA", action="drop"),),
        **_retried(reason=_lost("send")),
    ),
    Case(
        rule="drop-at-data-end-retries",
        faults=(Fault(stage="DATA_END", action="drop"),),
        **_retried(reason=_lost("send")),
    ),
    Case(
        rule="drop-after-acceptance-retries",
        faults=(Fault(stage="DATA_END", action="accept_then_drop"),),
        # The server has the message; the worker cannot know it, so it will send it again.
        **_retried(reason=_lost("send"), received=1),
    ),
    # --- servers that offer PIPELINING or CHUNKING and misbehave ------------------------------
    Case(
        rule="drop-on-a-pipelined-group-retries",
        faults=(Fault(stage="PIPELINED", action="drop"),),
        modes=("pipelining", "chunking"),
        **_retried(reason=_lost("send")),
    ),
    Case(
        rule="drop-mid-chunk-retries",
        faults=(Fault(stage="BDAT", action="drop", after_bytes=40),),
        modes=("chunking",),
        **_retried(reason=_lost("send")),
    ),
    Case(
        rule="reply-4xx-to-a-chunk-retries",
        faults=(Fault(stage="BDAT", reply="452 4.3.1 Insufficient system storage"),),
        modes=("chunking",),
        **_retried(
            reason=RETRY + re.escape("452 4.3.1 Insufficient system storage") + "$", code=452
        ),
    ),
    Case(
        rule="reply-5xx-to-a-chunk-fails",
        faults=(Fault(stage="BDAT", reply="554 5.6.0 Message content rejected"),),
        modes=("chunking",),
        **_failed(reason=FAILED + re.escape("554 5.6.0 Message content rejected") + "$", code=554),
    ),
    Case(
        # _chunking_refused: the server's fault; the profile's next attempt goes without BDAT
        rule="chunking-offered-bdat-unknown-retries",
        faults=(Fault(stage="BDAT", action="unrecognised"),),
        modes=("chunking",),
        **_retried(
            reason=RETRY
            + re.escape(
                'the server offers CHUNKING but did not accept BDAT (500 Error: command "BDAT"'
                " not recognized); the message will be sent again without it"
            )
            + "$",
            code=500,
        ),
    ),
)

# Rules that no case above can reach through the server kit:
#
# - _setup_failure, SMTPNotSupported: aiosmtplib raises it when an address needs SMTPUTF8 and
#   the server does not offer it, but worker/mime.py refuses a non-ASCII address first, at the
#   build stage (the build case above covers that rule), and the worker asks for no other
#   extension.
# - the final fallback of classify() (an exception no rule knows: transient): whatever the
#   server does, aiosmtplib raises an SMTPException, an OSError or a TimeoutError, which the
#   rules above take; only a bug in the worker itself ends there.
#
# "host unreachable" (dns-host-unreachable-pauses) needs no server: the profile points at an
# address without a route. Whether the machine answers that at once depends on its routes, so
# the case is skipped where it does not.


# What each kind of server offers.
MODES: Mapping[str, Mapping[str, bool]] = {
    "classic": {},
    "pipelining": {"pipelining": True},
    "chunking": {"pipelining": True, "chunking": True},
}


def _params() -> list[Any]:
    return [
        pytest.param(case, mode, id=f"{case.rule}-{mode}", marks=case.marks)
        for case in CASES
        for mode in case.modes
    ]


def _in_mode(fault: Fault, mode: str) -> Fault:
    """The same fault where a server that offers CHUNKING sees BDAT instead of DATA."""
    if mode == "chunking" and fault.stage == "DATA":
        return dataclasses.replace(fault, stage="BDAT")
    return fault


@pytest.mark.parametrize(("case", "mode"), _params())
async def test_classification_through_server(
    settings: Settings, smtp_server_factory: SmtpServerFactory, case: Case, mode: str
) -> None:
    settings = fast_settings(settings, **RETRY_SETTINGS)
    server = smtp_server_factory(**case.server, **MODES[mode])
    for fault in (_in_mode(fault, mode) for fault in case.faults):
        server.script.on(
            fault.stage,
            reply=fault.reply,
            action=fault.action,
            rcpt=fault.rcpt,
            seconds=fault.seconds,
            after_bytes=fault.after_bytes,
        )
    if case.stop_server:
        server.stop()
    await add_profile(settings, server, **case.profile)
    [message_id] = await enqueue(settings, **case.message)

    await run_until_empty(settings, limit=20)

    stored = await row(settings, message_id)
    attempts = await attempts_of(settings, message_id)
    [attempt] = attempts
    if case.unroutable and not re.search(UNREACHABLE_ERROR, attempt["error"] or ""):
        pytest.skip(f"{UNROUTABLE} is not unreachable from this machine: {attempt['error']}")
    [profile] = await sql(
        settings,
        "SELECT pause_reason, EXTRACT(EPOCH FROM paused_until - now()) AS pause_left"
        " FROM mail.profile WHERE name = 'test'",
    )
    assert case.status == stored["status"], stored["status_reason"]
    assert re.match(case.reason, stored["status_reason"]), stored["status_reason"]
    spent = 0 if case.outcome == "deferred" else 1
    assert spent == stored["attempts"]
    assert (case.outcome, case.code) == (attempt["outcome"], attempt["smtp_code"]), attempt
    if case.pause is None:
        assert profile.pause_left is None, profile.pause_reason
    else:
        assert profile.pause_left is not None
        assert case.pause.seconds - 10 < float(profile.pause_left) <= case.pause.seconds
        assert re.match(case.pause.reason, profile.pause_reason), profile.pause_reason
    assert case.received == len(server.messages)
    if case.logins is not None:
        assert case.logins == len(server.auth_attempts)


def test_no_rule_is_listed_twice() -> None:
    """Each case has an id of its own, so a report names exactly one rule."""
    rules = [case.rule for case in CASES]
    assert len(rules) == len(set(rules))
