"""Each kind of SMTP failure is classified by code, enhanced code and text together."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Awaitable, Callable

import aiosmtplib
import pytest
from aiosmtplib.protocol import SMTPProtocol

from worker.classify import (
    FailureKind,
    Stage,
    StartTlsUnavailable,
    UnencryptedLogin,
    classify,
    enhanced_code,
)
from worker.mime import MessageBuildError

T, P, PR, Q = (
    FailureKind.TRANSIENT,
    FailureKind.PERMANENT,
    FailureKind.PROFILE,
    FailureKind.QUOTA,
)


def _refused(*pairs: tuple[str, int]) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(code, f"{code // 100}.1.1 no", rcpt)
            for rcpt, code in pairs
        ]
    )


@pytest.mark.parametrize(
    ("exc", "stage", "kind"),
    [
        # passing trouble: retry the message
        (
            aiosmtplib.SMTPConnectError("Error connecting to h on port 25: [Errno 111] refused"),
            Stage.CONNECT,
            T,
        ),
        # "ssl" in the host name is not a TLS failure
        (
            aiosmtplib.SMTPConnectError(
                "Error connecting to ssl0.ovh.net on port 465: [Errno 111] Connect call failed"
            ),
            Stage.CONNECT,
            T,
        ),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), Stage.SEND, T),
        (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), Stage.SEND, T),
        (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), Stage.CONNECT, T),
        (aiosmtplib.SMTPDataError(451, "4.3.0 Temporary failure, try later"), Stage.SEND, T),
        (
            aiosmtplib.SMTPSenderRefused(421, "4.3.0 Temporary System Problem", "a@b.pl"),
            Stage.SEND,
            T,
        ),
        (_refused(("a@x.pl", 450), ("b@x.pl", 550)), Stage.SEND, T),
        # the message itself is wrong: fail now
        (aiosmtplib.SMTPDataError(554, "5.6.0 Message content rejected"), Stage.SEND, P),
        (aiosmtplib.SMTPDataError(552, "5.3.4 Message size exceeds fixed limit"), Stage.SEND, P),
        (_refused(("a@x.pl", 550), ("b@x.pl", 550)), Stage.SEND, P),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), Stage.SEND, P),
        (MessageBuildError("extra header 'From' is set by the service"), Stage.BUILD, P),
        # the account or its settings: pause the profile
        (
            aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Authentication credentials invalid"),
            Stage.AUTH,
            PR,
        ),
        (
            aiosmtplib.SMTPAuthenticationError(
                534, "5.7.9 Application-specific password required."
            ),
            Stage.AUTH,
            PR,
        ),
        (
            aiosmtplib.SMTPAuthenticationError(535, "5.7.139 Authentication unsuccessful"),
            Stage.AUTH,
            PR,
        ),
        (
            aiosmtplib.SMTPSenderRefused(
                550, "5.7.30 Basic authentication is not supported", "a@b"
            ),
            Stage.SEND,
            PR,
        ),
        (
            aiosmtplib.SMTPSenderRefused(530, "5.7.0 Authentication required", "a@b.pl"),
            Stage.SEND,
            PR,
        ),
        (
            aiosmtplib.SMTPException("The SMTP AUTH extension is not supported by this server."),
            Stage.AUTH,
            PR,
        ),
        (StartTlsUnavailable("the server offers no STARTTLS"), Stage.TLS, PR),
        (UnencryptedLogin("refusing to send the password of profile x"), Stage.AUTH, PR),
        (
            ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed"),
            Stage.TLS,
            PR,
        ),
        (
            aiosmtplib.SMTPConnectError("Error connecting: [SSL: WRONG_VERSION_NUMBER] wrong"),
            Stage.CONNECT,
            PR,
        ),
        (socket.gaierror(-2, "Name or service not known"), Stage.CONNECT, PR),
        # the provider's limits: pause for longer
        (
            aiosmtplib.SMTPDataError(550, "5.4.5 Daily user sending limit exceeded. - gsmtp"),
            Stage.SEND,
            Q,
        ),
        (
            aiosmtplib.SMTPSenderRefused(550, "5.4.5 Daily sending quota exceeded.", "a@b.pl"),
            Stage.SEND,
            Q,
        ),
        (
            aiosmtplib.SMTPAuthenticationError(454, "4.7.0 Too many login attempts, try later."),
            Stage.AUTH,
            Q,
        ),
        (
            aiosmtplib.SMTPConnectResponseError(421, "4.7.0 Try again later, closing connection."),
            Stage.CONNECT,
            Q,
        ),
        (
            aiosmtplib.SMTPDataError(
                554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
            ),
            Stage.SEND,
            Q,
        ),
        (
            aiosmtplib.SMTPSenderRefused(
                432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit", "a@b.pl"
            ),
            Stage.SEND,
            Q,
        ),
    ],
)
def test_classification(exc: BaseException, stage: Stage, kind: FailureKind) -> None:
    """The failure kind decides between retry, failure and a profile pause."""
    assert kind == classify(exc, stage).kind


def test_google_daily_limit_is_not_a_permanent_failure() -> None:
    """550 5.4.5 pauses the profile: the first digit alone would wrongly fail the message."""
    failure = classify(aiosmtplib.SMTPDataError(550, "5.4.5 Daily user sending limit"), Stage.SEND)
    assert (failure.kind, failure.code, failure.enhanced) == (FailureKind.QUOTA, 550, "5.4.5")


def test_reasons_are_one_line_and_hint_what_to_do() -> None:
    """A multi-line reply becomes one readable line; auth failures say what to check."""
    exc = aiosmtplib.SMTPAuthenticationError(
        535, "5.7.8 Username and Password not accepted.\n5.7.8 Learn more at https://x"
    )
    failure = classify(exc, Stage.AUTH)
    assert "\n" not in failure.reason
    assert failure.reason.startswith("535 5.7.8 Username and Password not accepted.")
    assert failure.hint == "check the login and password of the profile"


def test_refused_recipients_are_listed() -> None:
    """When every recipient is refused, each address and its reply is in the reason."""
    failure = classify(_refused(("a@x.pl", 550), ("b@x.pl", 551)), Stage.SEND)
    assert "a@x.pl: 550 5.1.1 no" in failure.reason
    assert "b@x.pl: 551 5.1.1 no" in failure.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5.7.8 bad", "5.7.8"), ("Daily 4.5.3 x", "4.5.3"), ("no code here", None)],
)
def test_enhanced_code(text: str, expected: str | None) -> None:
    """The RFC 3463 code is found anywhere in the reply text."""
    assert expected == enhanced_code(text)


def test_daily_limit_is_told_from_a_rate_limit() -> None:
    """5.4.5 and 'daily' texts are the provider's daily quota; 4.7.0 is a short rate limit."""
    daily = classify(
        aiosmtplib.SMTPDataError(550, "5.4.5 Daily sending quota exceeded."), Stage.SEND
    )
    rate = classify(
        aiosmtplib.SMTPAuthenticationError(454, "4.7.0 Too many login attempts"), Stage.AUTH
    )
    assert (True, False) == (daily.daily_limit, rate.daily_limit)


def test_credential_replies_are_marked() -> None:
    """Refused logins (and Microsoft's 5.7.30 at MAIL) say the credentials are the problem."""
    refused = classify(aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad"), Stage.AUTH)
    basic_off = classify(
        aiosmtplib.SMTPSenderRefused(550, "5.7.30 Basic authentication is not supported", "a@b.pl"),
        Stage.SEND,
    )
    throttled = classify(aiosmtplib.SMTPAuthenticationError(454, "4.7.0 Too many"), Stage.AUTH)
    assert (True, True, False) == (
        refused.about_credentials,
        basic_off.about_credentials,
        throttled.about_credentials,
    )


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPSenderRefused(
            552, "Error: message size exceeds fixed maximum message size", "a@b.pl"
        ),
        aiosmtplib.SMTPSenderRefused(552, "5.3.4 Message size exceeds fixed limit", "a@b.pl"),
    ],
)
def test_a_message_over_the_servers_size_fails_alone(exc: aiosmtplib.SMTPSenderRefused) -> None:
    """552 at MAIL answers the SIZE the message declared: fail it, do not pause the profile."""
    failure = classify(exc, Stage.SEND)
    hint = "the message is larger than the server accepts (its SIZE limit)"
    assert (FailureKind.PERMANENT, hint) == (failure.kind, failure.hint)


async def _rcpt_with_a_tab() -> object:
    # sendmail's RCPT for an address its own address check lets through (a quoted TAB).
    return await SMTPProtocol().execute_command(b"RCPT", b'TO:<"jan\tkowalski"@example.pl>')


async def _sendmail_to_an_angle_bracket_literal() -> object:
    return await aiosmtplib.SMTP().sendmail("jankowalski@wp.pl", ["jan@[192.0.2.<]"], b"x")


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (_rcpt_with_a_tab, "Command arg contains a prohibited control character"),
        (
            _sendmail_to_an_angle_bracket_literal,
            "Address 'jan@[192.0.2.<]' contains characters not permitted in an SMTP mailbox",
        ),
    ],
)
async def test_an_envelope_the_smtp_client_refuses_fails_the_message_at_once(
    call: Callable[[], Awaitable[object]], text: str
) -> None:
    """aiosmtplib's ValueError for an address it will not put on the wire is permanent, with
    its text: every attempt would be refused the same way."""
    with pytest.raises(ValueError, match=re.escape(text)) as raised:
        await call()  # aiosmtplib's own check, made before any I/O
    failure = classify(raised.value, Stage.SEND)
    expected = (FailureKind.PERMANENT, f"the message cannot be sent as it is: {text}")
    assert expected == (failure.kind, failure.reason)


def test_a_value_error_of_our_own_while_sending_is_retried() -> None:
    """A ValueError raised outside aiosmtplib (a bug of ours) is not blamed on the message."""
    try:
        raise ValueError("invalid literal for int() with base 10: 'x'")
    except ValueError as exc:
        failure = classify(exc, Stage.SEND)
    assert FailureKind.TRANSIENT == failure.kind


def test_a_login_without_tls_pauses_the_profile_with_a_hint() -> None:
    """Refusing to send the password unencrypted pauses the profile, saying which settings work."""
    reason = "refusing to send the password of profile wp over an unencrypted connection"
    failure = classify(UnencryptedLogin(reason), Stage.AUTH)
    expected = (
        FailureKind.PROFILE,
        reason,
        "set the profile's encryption to ssl, starttls or auto",
    )
    assert expected == (failure.kind, failure.reason, failure.hint)
