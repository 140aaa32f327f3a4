"""The provider-shaped test servers answer as their providers do: logins, refusals, limits.

These talk to the servers with aiosmtplib directly, so a later test that sends through them
(the worker, ``send-test``) can trust what they model.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.kit.provider_servers import (
    GMAIL,
    GMAIL_ACCOUNT_PASSWORD,
    ONET,
    WP,
    ProviderAccount,
    ProviderServers,
    ProviderTls,
)
from tests.kit.smtp_server import SmtpTestServer, smtp_client

pytestmark = pytest.mark.timeout(30)


def _message(account: ProviderAccount, number: int = 1) -> EmailMessage:
    message = EmailMessage()
    message["From"] = account.address
    message["To"] = "odbiorca@example.com"
    message["Subject"] = f"Wiadomość testowa {number}"
    message.set_content("Treść wiadomości.")
    return message


async def _login_reply(server: SmtpTestServer, login: str, password: str) -> tuple[int, str]:
    """The server's final answer to one login (235 when it succeeds)."""
    async with smtp_client(server) as client:
        try:
            response = await client.login(login, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            return exc.code, exc.message
        return response.code, response.message


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_wp_takes_the_local_part_and_refuses_the_full_address(
    provider_servers: ProviderServers, tls: ProviderTls
) -> None:
    """WP logs in ``jankowalski``; ``jankowalski@wp.pl`` with the same password gets 535."""
    server = provider_servers.wp(tls=tls)
    assert (
        (235, "2.7.0 Authentication successful"),
        (535, "5.7.8 Authentication credentials invalid"),
    ) == (
        await _login_reply(server, WP.login, WP.password),
        await _login_reply(server, WP.address, WP.password),
    )
    assert (tls == "implicit") == (server.port == 465)


async def test_onet_takes_the_full_address_only(provider_servers: ProviderServers) -> None:
    """Onet logs in ``annanowak@op.pl``; ``annanowak`` gets 535."""
    server = provider_servers.onet()
    assert [235, 535] == [
        (await _login_reply(server, ONET.login, ONET.password))[0],
        (await _login_reply(server, "annanowak", ONET.password))[0],
    ]
    assert 465 == server.port


async def test_gmail_wants_the_app_password(provider_servers: ProviderServers) -> None:
    """The app password logs in; the account password gets 534 5.7.9, a wrong one 535 5.7.8."""
    server = provider_servers.gmail()
    assert [
        (235, "2.7.0 Authentication successful"),
        (
            534,
            "5.7.9 Application-specific password required. Learn more at\n"
            "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp",
        ),
        (
            535,
            "5.7.8 Username and Password not accepted. For more information, go to\n"
            "5.7.8  https://support.google.com/mail/?p=BadCredentials - gsmtp",
        ),
    ] == [
        await _login_reply(server, GMAIL.login, GMAIL.password),
        await _login_reply(server, GMAIL.login, GMAIL_ACCOUNT_PASSWORD),
        await _login_reply(server, GMAIL.login, "zle-haslo"),
    ]


@pytest.mark.parametrize("stage", ["DATA_END", "MAIL"])
async def test_gmail_refuses_mail_over_its_daily_limit(
    provider_servers: ProviderServers, stage: str
) -> None:
    """After the limit every message gets 550 5.4.5 (at DATA's end or at MAIL); none arrives."""
    server = provider_servers.gmail(
        daily_limit=2, limit_at="MAIL" if stage == "MAIL" else "DATA_END"
    )
    refusals: list[tuple[type[Exception], int, str]] = []
    async with smtp_client(server, username=GMAIL.login, password=GMAIL.password) as client:
        for number in range(1, 5):
            try:
                await client.send_message(_message(GMAIL, number))
            except aiosmtplib.SMTPResponseException as exc:
                refusals.append((type(exc), exc.code, exc.message))
    refused_as = aiosmtplib.SMTPDataError if stage == "DATA_END" else aiosmtplib.SMTPSenderRefused
    daily_limit = (
        "5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
        "5.4.5 sending limits go to https://support.google.com/a/answer/166852 - gsmtp"
    )
    assert [(refused_as, 550, daily_limit)] * 2 == refusals
    assert ["Wiadomość testowa 1", "Wiadomość testowa 2"] == [
        str(received.parsed()["Subject"]) for received in server.messages
    ]
