"""The SMTP test-server kit does what tests rely on, proven with aiosmtplib as a real client."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import textwrap
import time
from typing import Any

import aiosmtplib
import pytest

from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import (
    AuthAttempt,
    CertificateKind,
    SmtpTestCA,
    SmtpTestServer,
    Stage,
    close_smtp_client,
    normalise_reply,
    smtp_client,
)

SENDER = "user@example.com"
MESSAGE = b"From: user@example.com\r\nTo: a@example.org\r\nSubject: Kit\r\n\r\nHello.\r\n"
TIMEOUT = 2.0
SHORT_TIMEOUT = 0.5
GMAIL_QUOTA = (
    "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
    "550-5.4.5 sending limits go to\r\n"
    "550 5.4.5  https://support.google.com/a/answer/166852 - gsmtp"
)


def connected(server: SmtpTestServer, **options: Any) -> Any:
    """smtp_client() with this module's short default timeout."""
    return smtp_client(server, **({"timeout": TIMEOUT} | options))


async def send(client: aiosmtplib.SMTP, *recipients: str) -> dict[str, Any]:
    refused, _ = await client.sendmail(SENDER, list(recipients or ["a@example.org"]), MESSAGE)
    return refused


# --- Modes, TLS and AUTH ----------------------------------------------------------------------


async def test_implicit_tls_login_and_message_are_recorded(smtps_server: SmtpTestServer) -> None:
    """Over SMTPS a verifying client logs in and sends; the message, login and TLS are recorded."""
    client = aiosmtplib.SMTP(
        hostname="localhost",
        port=smtps_server.port,
        use_tls=True,
        cert_bundle=smtps_server.cert_bundle,
        timeout=TIMEOUT,
    )
    await client.connect()
    try:
        await client.login(SMTP_LOGIN, SMTP_PASSWORD)
        await client.sendmail(SENDER, ["a@example.org", "b@example.org"], MESSAGE)
    finally:
        await close_smtp_client(client, send_quit=True)

    [message] = smtps_server.messages
    assert (message.mail_from, message.rcpt_tos) == (SENDER, ("a@example.org", "b@example.org"))
    assert message.data == MESSAGE
    assert message.parsed()["Subject"] == "Kit"
    assert message.login == SMTP_LOGIN
    assert message.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert [AuthAttempt(1, "PLAIN", SMTP_LOGIN, True, message.tls_version)] == list(
        smtps_server.auth_attempts
    )


async def test_starttls_upgrade_then_login_and_send(starttls_server: SmtpTestServer) -> None:
    """A client that requires STARTTLS upgrades, logs in and sends over TLS."""
    client = aiosmtplib.SMTP(
        hostname="localhost",
        port=starttls_server.port,
        start_tls=True,
        cert_bundle=starttls_server.cert_bundle,
        username=SMTP_LOGIN,
        password=SMTP_PASSWORD,
        timeout=TIMEOUT,
    )
    await client.connect()
    try:
        await send(client)
    finally:
        await close_smtp_client(client, send_quit=True)

    [message] = starttls_server.messages
    assert message.login == SMTP_LOGIN
    assert message.tls_version in {"TLSv1.2", "TLSv1.3"}
    verbs = [command.verb for command in starttls_server.commands]
    assert verbs == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]


async def test_starttls_server_refuses_mail_before_starttls(
    starttls_server: SmtpTestServer,
) -> None:
    """By default the STARTTLS server answers 530 to MAIL on an unencrypted connection."""
    async with connected(starttls_server, start_tls=False) as client:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await send(client)

    assert refused.value.code == 530
    assert starttls_server.messages == ()


async def test_wrong_password_is_refused_with_535_and_never_recorded(
    smtps_server: SmtpTestServer,
) -> None:
    """A wrong password gets 535 5.7.8; each attempt is recorded by login, the password nowhere."""
    async with connected(smtps_server) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.login(SMTP_LOGIN, "wrong-pass")

    assert refused.value.code == 535
    assert "5.7.8" in refused.value.message
    # aiosmtplib tries every mechanism the server offers before giving up.
    assert [
        (attempt.mechanism, attempt.login, attempt.success)
        for attempt in smtps_server.auth_attempts
    ] == [("PLAIN", SMTP_LOGIN, False), ("LOGIN", SMTP_LOGIN, False)]
    everything = repr(
        (smtps_server, smtps_server.auth_attempts, smtps_server.commands, smtps_server.accounts)
    )
    assert "wrong-pass" not in everything
    assert SMTP_PASSWORD not in everything


async def test_server_without_tls_fails_a_client_requiring_starttls_before_auth(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """With no TLS offered, start_tls=True fails and the server never sees an AUTH command."""
    server = smtp_server_factory(tls="none", accounts={SMTP_LOGIN: SMTP_PASSWORD})
    client = aiosmtplib.SMTP(
        hostname="localhost",
        port=server.port,
        start_tls=True,
        username=SMTP_LOGIN,
        password=SMTP_PASSWORD,
        timeout=TIMEOUT,
    )
    with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS extension not supported"):
        await client.connect()
    await close_smtp_client(client)

    assert server.auth_attempts == ()
    assert "AUTH" not in [command.verb for command in server.commands]


async def test_leaky_server_records_a_password_sent_in_clear(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """offer_auth_without_tls lets a careless client log in unencrypted, and that is visible."""
    server = smtp_server_factory(
        tls="none", accounts={SMTP_LOGIN: SMTP_PASSWORD}, offer_auth_without_tls=True
    )
    async with connected(server, start_tls=None) as client:
        await client.login(SMTP_LOGIN, SMTP_PASSWORD)

    [attempt] = server.auth_attempts
    assert (attempt.login, attempt.success, attempt.tls_version) == (SMTP_LOGIN, True, None)


@pytest.mark.parametrize(
    ("options", "login", "code", "text"),
    [
        pytest.param(
            {
                "auth_replies": {
                    "2sv@example.com": "534-5.7.9 Application-specific password required.\n"
                    "534 5.7.9 Learn more at https://support.google.com/mail/?p=InvalidSecondFactor"
                }
            },
            "2sv@example.com",
            534,
            "5.7.9 Application-specific password required.\n5.7.9 Learn more",
            id="gmail-534-multiline",
        ),
        pytest.param(
            {"bad_credentials_reply": "535 5.7.139 Authentication unsuccessful"},
            SMTP_LOGIN,
            535,
            "5.7.139 Authentication unsuccessful",
            id="microsoft-535",
        ),
    ],
)
async def test_custom_auth_failure_replies(
    smtp_server_factory: SmtpServerFactory,
    options: dict[str, Any],
    login: str,
    code: int,
    text: str,
) -> None:
    """Per-login and wrong-password AUTH replies reach the client verbatim, multi-line included."""
    accounts = {SMTP_LOGIN: SMTP_PASSWORD, "2sv@example.com": "pw"}
    server = smtp_server_factory(tls="implicit", accounts=accounts, **options)
    async with connected(server) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.login(login, "not-the-password")

    assert code == refused.value.code
    assert refused.value.message.startswith(text)


async def test_auth_mechanisms_can_be_limited(smtp_server_factory: SmtpServerFactory) -> None:
    """With one mechanism offered, a failed login() is exactly one AUTH attempt."""
    server = smtp_server_factory(
        tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}, auth_mechanisms=("LOGIN",)
    )
    async with connected(server) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await client.login(SMTP_LOGIN, "wrong")

    assert [attempt.mechanism for attempt in server.auth_attempts] == ["LOGIN"]


REFUSALS: list[Any] = [
    pytest.param("self_signed", "self-signed certificate", id="self-signed"),
    pytest.param("expired", "certificate has expired", id="expired"),
    pytest.param("wrong_host", "Hostname mismatch", id="wrong-host"),
]


@pytest.mark.parametrize(("kind", "reason"), REFUSALS)
async def test_verifying_client_refuses_bad_certificate_over_implicit_tls(
    smtp_server_factory: SmtpServerFactory, kind: CertificateKind, reason: str
) -> None:
    """Each bad certificate kind fails verification, for its own reason, before any SMTP."""
    server = smtp_server_factory(tls="implicit", certificate=kind)
    client = aiosmtplib.SMTP(**server.client_options(), timeout=TIMEOUT)
    with pytest.raises(aiosmtplib.SMTPConnectError, match="CERTIFICATE_VERIFY_FAILED") as failed:
        await client.connect()
    await close_smtp_client(client)

    assert reason in str(failed.value)
    assert server.connection_count == 0


@pytest.mark.parametrize(("kind", "reason"), REFUSALS)
async def test_verifying_client_refuses_bad_certificate_during_starttls(
    smtp_server_factory: SmtpServerFactory, kind: CertificateKind, reason: str
) -> None:
    """During STARTTLS a bad certificate raises ssl's own error, and no AUTH or MAIL follows."""
    server = smtp_server_factory(
        tls="starttls", certificate=kind, accounts={SMTP_LOGIN: SMTP_PASSWORD}
    )
    client = aiosmtplib.SMTP(
        **server.client_options(), username=SMTP_LOGIN, password=SMTP_PASSWORD, timeout=TIMEOUT
    )
    with pytest.raises(ssl.SSLCertVerificationError, match=reason):
        await client.connect()
    await close_smtp_client(client)

    assert [command.verb for command in server.commands] == ["EHLO", "STARTTLS"]


async def test_valid_certificate_verifies_against_the_ca_file(smtp_ca: SmtpTestCA) -> None:
    """The CA PEM file is what makes the certificate trusted: the system store alone refuses it."""
    with SmtpTestServer(ca=smtp_ca, tls="implicit") as server:
        async with connected(server) as client:
            assert client.is_connected
        untrusting = aiosmtplib.SMTP(hostname="localhost", port=server.port, use_tls=True)
        with pytest.raises(aiosmtplib.SMTPConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.connect()
        await close_smtp_client(untrusting)


async def test_plain_relay_offers_neither_tls_nor_auth(plain_server: SmtpTestServer) -> None:
    """The plain server takes mail without TLS or login, and advertises neither."""
    async with connected(plain_server) as client:
        await client.ehlo()
        assert not client.supports_extension("starttls")
        assert not client.supports_extension("auth")
        await send(client)

    [message] = plain_server.messages
    assert (message.login, message.tls_version) == (None, None)


async def test_starttls_relay_without_accounts_offers_no_auth(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """A STARTTLS server without accounts does not advertise AUTH even after the upgrade."""
    server = smtp_server_factory(tls="starttls")
    async with connected(server) as client:
        assert not client.supports_extension("auth")
        await send(client)

    assert len(server.messages) == 1


# --- Recording ----------------------------------------------------------------------------------


async def test_connection_reuse_and_logins_are_counted(smtps_server: SmtpTestServer) -> None:
    """Two messages over one connection: one connection, one AUTH, two MAIL commands."""
    async with connected(smtps_server, username=SMTP_LOGIN, password=SMTP_PASSWORD) as client:
        await send(client)
        await send(client)
        assert smtps_server.open_connection_count == 1

    assert smtps_server.connection_count == 1
    assert len(smtps_server.auth_attempts) == 1
    assert [message.number for message in smtps_server.messages] == [1, 2]
    assert [command.verb for command in smtps_server.commands].count("MAIL") == 2
    assert {1} == {command.connection for command in smtps_server.commands}


async def test_auth_command_is_logged_without_credentials(smtps_server: SmtpTestServer) -> None:
    """The command log keeps only the AUTH mechanism, not the base64 credentials that follow."""
    async with connected(smtps_server) as client:
        await client.ehlo()
        await client.auth_plain(SMTP_LOGIN, SMTP_PASSWORD)

    [auth] = [command for command in smtps_server.commands if command.verb == "AUTH"]
    assert auth.arg == "PLAIN"


async def test_wait_for_messages_blocks_until_they_arrive(plain_server: SmtpTestServer) -> None:
    """wait_for_messages returns once enough arrived and raises TimeoutError when they don't."""
    waiting = asyncio.create_task(asyncio.to_thread(plain_server.wait_for_messages, 1, 5.0))
    async with connected(plain_server) as client:
        await send(client)

    assert len(await waiting) == 1
    with pytest.raises(TimeoutError, match="1 of 2 messages"):
        plain_server.wait_for_messages(2, timeout=0.05)


def test_serves_a_client_in_another_process(smtps_server: SmtpTestServer) -> None:
    """A client in a subprocess (as the worker will be) sends over verified SMTPS."""
    script = textwrap.dedent(
        """
        import smtplib, ssl, sys
        host, port, cafile, login, password = sys.argv[1:]
        context = ssl.create_default_context(cafile=cafile)
        with smtplib.SMTP_SSL(host, int(port), context=context, timeout=5) as client:
            client.login(login, password)
            client.sendmail(login, ["a@example.org"], b"Subject: subprocess\\r\\n\\r\\nHi\\r\\n")
        """
    )
    arguments = [smtps_server.hostname, str(smtps_server.port), str(smtps_server.cert_bundle)]
    subprocess.run(
        [sys.executable, "-c", script, *arguments, SMTP_LOGIN, SMTP_PASSWORD],
        check=True,
        timeout=30,
    )

    [message] = smtps_server.wait_for_messages(1)
    assert message.parsed()["Subject"] == "subprocess"


async def test_stop_closes_open_connections(smtp_ca: SmtpTestCA) -> None:
    """stop() disconnects clients that are still connected, and may be called again."""
    server = SmtpTestServer(ca=smtp_ca, tls="implicit").start()
    async with connected(server) as client:
        await client.noop()
        server.stop()
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()

    assert server.open_connection_count == 0
    server.stop()


# --- Faults -------------------------------------------------------------------------------------


async def test_421_at_mail_refuses_the_sender_and_closes(plain_server: SmtpTestServer) -> None:
    """A scripted 421 at MAIL reaches the client, and the server closes the connection."""
    plain_server.script.on("MAIL", reply="421 4.7.0 Try again later, closing connection.")
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await send(client)
        assert not client.is_connected

    assert (
        refused.value.code,
        refused.value.message,
    ) == (421, "4.7.0 Try again later, closing connection.")
    assert plain_server.messages == ()


async def test_550_at_one_rcpt_of_three_accepts_the_others(plain_server: SmtpTestServer) -> None:
    """A RCPT rule refuses one recipient; the message is delivered to the other two."""
    plain_server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt="bad@example.org")
    async with connected(plain_server) as client:
        refused = await send(client, "a@example.org", "bad@example.org", "c@example.org")

    assert {
        address: (response.code, response.message) for address, response in refused.items()
    } == {"bad@example.org": (550, "5.1.1 No such user")}
    [message] = plain_server.messages
    assert message.rcpt_tos == ("a@example.org", "c@example.org")


@pytest.mark.parametrize("stage", ["DATA", "DATA_END"])
async def test_drop_during_data_loses_the_message(
    plain_server: SmtpTestServer, stage: Stage
) -> None:
    """A drop at DATA (before 354) or after the final dot disconnects and records nothing."""
    plain_server.script.on(stage, action="drop")
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(client)

    assert plain_server.messages == ()


async def test_stall_makes_the_client_time_out(plain_server: SmtpTestServer) -> None:
    """A stalled MAIL gets no reply, so a client with a short timeout raises SMTPTimeoutError."""
    plain_server.script.on("MAIL", action="stall")
    started = time.monotonic()
    async with connected(plain_server, timeout=SHORT_TIMEOUT) as client:
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await send(client)

    assert time.monotonic() - started < 2.0
    assert plain_server.messages == ()


async def test_stall_ends_in_a_drop_after_its_seconds(plain_server: SmtpTestServer) -> None:
    """After `seconds` a stall closes the connection, which a patient client sees as such."""
    plain_server.script.on("NOOP", action="stall", seconds=0.1)
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()


async def test_accept_then_drop_records_the_message_the_client_thinks_failed(
    plain_server: SmtpTestServer,
) -> None:
    """accept_then_drop keeps the message but never says 250: the classic duplicate source."""
    plain_server.script.on("DATA_END", action="accept_then_drop")
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(client)

    assert [message.data for message in plain_server.messages] == [MESSAGE]


async def test_accept_then_stall_records_the_message_the_client_timed_out_on(
    plain_server: SmtpTestServer,
) -> None:
    """accept_then_stall keeps the message and lets the client's read time out."""
    plain_server.script.on("DATA_END", action="accept_then_stall")
    async with connected(plain_server, timeout=SHORT_TIMEOUT) as client:
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await send(client)

    assert len(plain_server.messages) == 1


async def test_once_rule_applies_only_once(plain_server: SmtpTestServer) -> None:
    """A once() rule refuses the first message only; the retry on the same connection is taken."""
    rule = plain_server.script.once("DATA_END", reply="451 4.3.0 Temporary failure")
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(client)
        await send(client)

    assert refused.value.code == 451
    assert rule.fired == 1
    assert [message.number for message in plain_server.messages] == [2]


async def test_rule_for_the_nth_message(plain_server: SmtpTestServer) -> None:
    """message=2 refuses the second transaction only."""
    plain_server.script.on("MAIL", reply="452 4.5.3 Too many recipients", message=2)
    async with connected(plain_server) as client:
        await send(client)
        with pytest.raises(aiosmtplib.SMTPSenderRefused):
            await send(client)
        await send(client)

    assert [message.number for message in plain_server.messages] == [1, 3]


async def test_match_sees_the_event(plain_server: SmtpTestServer) -> None:
    """match= gets the Event: here, refuse DATA for transactions with more than one recipient."""
    plain_server.script.on(
        "DATA_END", reply="452 4.5.3 Too many recipients", match=lambda e: len(e.rcpt_tos) > 1
    )
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPDataError):
            await send(client, "a@example.org", "b@example.org")
        await send(client, "a@example.org")

    assert [message.rcpt_tos for message in plain_server.messages] == [("a@example.org",)]


async def test_multiline_quota_reply_at_data_end(plain_server: SmtpTestServer) -> None:
    """A multi-line 550 5.4.5 reaches aiosmtplib as one SMTPDataError with every line."""
    plain_server.script.on("DATA_END", reply=GMAIL_QUOTA)
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(client)

    assert refused.value.code == 550
    assert len(refused.value.message.splitlines()) == 3
    assert refused.value.message.endswith("- gsmtp")


async def test_greeting_421_refuses_the_connection(plain_server: SmtpTestServer) -> None:
    """A CONNECT rule replaces the 220 greeting; aiosmtplib raises SMTPConnectResponseError."""
    plain_server.script.on("CONNECT", reply="421 4.3.0 Temporary System Problem. Try again later")
    client = aiosmtplib.SMTP(**plain_server.client_options(), timeout=TIMEOUT)
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
        await client.connect()
    await close_smtp_client(client)

    assert refused.value.code == 421


async def test_ehlo_rule(plain_server: SmtpTestServer) -> None:
    """An EHLO rule answers EHLO instead of the capabilities list."""
    plain_server.script.on("EHLO", reply="421 4.7.0 Try again later, closing connection.")
    async with connected(plain_server) as client:
        with pytest.raises(aiosmtplib.SMTPHeloError) as refused:
            await client.ehlo()

    assert refused.value.code == 421


async def test_auth_rule_answers_before_credentials_are_checked(
    smtps_server: SmtpTestServer,
) -> None:
    """An AUTH rule (Google's login throttling) refuses every attempt; none has a login."""
    smtps_server.script.on(
        "AUTH", reply="454 4.7.0 Too many login attempts, please try again later."
    )
    async with connected(smtps_server) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.login(SMTP_LOGIN, SMTP_PASSWORD)

    assert refused.value.code == 454
    assert [attempt.login for attempt in smtps_server.auth_attempts] == [None, None]


async def test_error_in_match_is_reported(smtp_ca: SmtpTestCA) -> None:
    """An exception in a match= callable gives the client a 500 and lands in server.errors."""
    with SmtpTestServer(ca=smtp_ca, tls="none") as server:
        server.script.on("MAIL", reply="550 5.0.0 never", match=lambda e: 1 / 0 > 0)
        async with connected(server) as client:
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await send(client)

    assert refused.value.code == 500
    [error] = server.errors
    assert "ZeroDivisionError" in error


# --- Script validation (no I/O) -----------------------------------------------------------------


def test_reply_lines_are_normalised() -> None:
    """Lines may end in LF or CRLF; continuation dashes are set on all lines but the last."""
    assert (
        normalise_reply("550 5.4.5 a\n550-5.4.5 b\r\n550-5.4.5 c")
        == "550-5.4.5 a\r\n550-5.4.5 b\r\n550 5.4.5 c"
    )


@pytest.mark.parametrize(
    ("stage", "options", "error"),
    [
        pytest.param("HELLO", {"reply": "550 no"}, "unknown stage", id="unknown-stage"),
        pytest.param("MAIL", {}, "give reply= or one of", id="nothing-to-do"),
        pytest.param("MAIL", {"action": "drop", "reply": "550 x"}, "reply= goes", id="both"),
        pytest.param("MAIL", {"action": "accept_then_drop"}, "only makes sense", id="accept"),
        pytest.param("DATA", {"action": "drop", "rcpt": "a@b"}, "rcpt= narrows", id="rcpt"),
        pytest.param("MAIL", {"reply": "Try later"}, "not an SMTP reply", id="no-code"),
        pytest.param("MAIL", {"reply": "550-a\n551 b"}, "not an SMTP reply", id="two-codes"),
        pytest.param("MAIL", {"reply": "550 zażółć"}, "not an SMTP reply", id="non-ascii"),
    ],
)
def test_invalid_rules_are_refused(stage: Any, options: dict[str, Any], error: str) -> None:
    """Mistakes in a rule fail when the rule is written, not as a puzzling server reply."""
    server = SmtpTestServer(tls="none")
    with pytest.raises(ValueError, match=error):
        server.script.on(stage, **options)
