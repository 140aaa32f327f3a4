"""Addresses as people write them, end to end: SQL rows, the Python API and the CLI alike.

Display names go into To and Cc and never into the envelope, an international domain is sent
in its xn-- form, and a non-ASCII local part travels with SMTPUTF8 when the server offers it
and fails in words when it does not. Real PostgreSQL, real aiosmtpd servers, a real worker.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage

from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.kit.database import sql
from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.outbox_samples import add_profiles_at
from tests.kit.smtp_fixtures import SmtpServerFactory
from tests.kit.smtp_server import ReceivedMessage, SmtpTestServer, smtp_client
from worker.cli import main
from worker.cli.exits import ExitCode
from worker.outbox import enqueue_and_commit
from worker.settings import Settings

ZAZOLC_PL = "xn--za-6ja4f8n1l.pl"  # zażółć.pl, by IDNA 2008
NO_DATABASE = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
INSERT = (
    "INSERT INTO mail.outbox (profile, to_addrs, cc_addrs, bcc_addrs, subject, body_text)"
    " VALUES ('test', {to}, {cc}, {bcc}, 'Zażółć gęślą jaźń', 'Dzień dobry.') RETURNING id"
)


async def _insert(settings: Settings, to: str, cc: str = "'{}'", bcc: str = "'{}'") -> int:
    """A row inserted with plain SQL, the array literals written as a producer writes them."""
    [(message_id,)] = await sql(settings, INSERT.format(to=to, cc=cc, bcc=bcc))
    return int(message_id)


def _parsed(received: ReceivedMessage) -> EmailMessage:
    """The message as received; UTF-8 headers (RFC 6532) read as text, not as raw bytes."""
    return email.message_from_string(received.data.decode("utf-8"), policy=email.policy.default)


def _mailboxes(message: EmailMessage, name: str) -> list[tuple[str, str]]:
    return [(box.display_name, box.addr_spec) for box in message[name].addresses]


def _mail_commands(server: SmtpTestServer) -> list[str]:
    return [command.arg or "" for command in server.commands if command.verb == "MAIL"]


def _plain_server(factory: SmtpServerFactory, *, smtputf8: bool) -> SmtpTestServer:
    """A local relay (no TLS, no login): nothing says EHLO before the worker asks for it."""
    return factory(tls="none", smtputf8=smtputf8)


async def _plain_profile(settings: Settings, server: SmtpTestServer) -> None:
    await add_profile(settings, server, encryption="none", login=None, password=None)


async def test_sql_rows_with_display_names_and_an_international_domain_are_sent(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """``ARRAY['Jan Kowalski <jan@example.pl>']`` and ``ARRAY['anna@zażółć.pl']`` inserted with
    SQL are sent: names in To and Cc, bare (xn--) addresses in RCPT TO, the Bcc name nowhere,
    no SMTPUTF8 asked for."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    named = await _insert(
        settings,
        to="ARRAY['Jan Kowalski <jan@example.pl>']",
        cc="""ARRAY['"Nowak, Anna" <anna@example.pl>']""",
        bcc="ARRAY['Archiwum Firmy <archiwum@example.pl>']",
    )
    international = await _insert(settings, to="ARRAY['anna@zażółć.pl']")

    await run_until_empty(settings)

    statuses = [
        (await row(settings, message_id))["status"] for message_id in (named, international)
    ]
    first, second = smtps_server.messages
    expected = (
        ["sent", "sent"],
        ("jan@example.pl", "anna@example.pl", "archiwum@example.pl"),
        [("Jan Kowalski", "jan@example.pl")],
        [("Nowak, Anna", "anna@example.pl")],
        -1,
        (f"anna@{ZAZOLC_PL}",),
        [("", f"anna@{ZAZOLC_PL}")],
        [False, False],
    )
    actual = (
        statuses,
        first.rcpt_tos,
        _mailboxes(first.parsed(), "To"),
        _mailboxes(first.parsed(), "Cc"),
        first.data.find(b"Archiwum"),
        second.rcpt_tos,
        _mailboxes(second.parsed(), "To"),
        ["SMTPUTF8" in arg.upper() for arg in _mail_commands(smtps_server)],
    )
    assert expected == actual


async def test_a_non_ascii_local_part_is_sent_with_smtputf8_when_the_server_offers_it(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """``zażółć@zażółć.pl`` goes out with ``MAIL FROM:<...> SMTPUTF8``: the local part in UTF-8
    in RCPT TO and in To (RFC 6532), the domain in its xn-- form, the display name decoded back."""
    settings = fast_settings(settings)
    server = _plain_server(smtp_server_factory, smtputf8=True)
    await _plain_profile(settings, server)
    message_id = await _insert(settings, to="ARRAY['Zażółć Gęślą <zażółć@zażółć.pl>']")

    await run_until_empty(settings)

    [received] = server.messages
    [mail] = _mail_commands(server)
    expected = (
        "sent",
        (f"zażółć@{ZAZOLC_PL}",),
        True,
        [("Zażółć Gęślą", f"zażółć@{ZAZOLC_PL}")],
        True,
    )
    actual = (
        (await row(settings, message_id))["status"],
        received.rcpt_tos,
        mail.upper().endswith(" SMTPUTF8"),
        _mailboxes(_parsed(received), "To"),
        f"<zażółć@{ZAZOLC_PL}>".encode() in received.data,
    )
    assert expected == actual


async def test_without_smtputf8_such_a_message_fails_in_words_and_the_others_are_sent(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """A server without SMTPUTF8: the message with a non-ASCII local part fails at once
    (one attempt, no retry) saying so and naming the address; nothing of it reaches the
    server; the profile is not paused and an ASCII message beside it is sent."""
    settings = fast_settings(settings)
    server = _plain_server(smtp_server_factory, smtputf8=False)
    await _plain_profile(settings, server)
    needs_utf8 = await _insert(settings, to="ARRAY['Zażółć <zażółć@example.pl>']")
    plain = await _insert(settings, to="ARRAY['Zażółć <anna@zażółć.pl>']")

    await run_until_empty(settings)

    failed = await row(settings, needs_utf8)
    [profile] = await sql(settings, "SELECT paused_until FROM mail.profile")
    expected = (
        "failed",
        "failed: the server does not offer SMTPUTF8, needed for the address"
        " 'zażółć@example.pl' (its part before the @ is not ASCII)",
        1,
        "sent",
        [(f"anna@{ZAZOLC_PL}",)],
        None,
    )
    actual = (
        failed["status"],
        failed["status_reason"],
        len(await attempts_of(settings, needs_utf8)),
        (await row(settings, plain))["status"],
        [received.rcpt_tos for received in server.messages],
        profile.paused_until,
    )
    assert expected == actual


async def test_the_python_api_takes_the_same_addresses_and_stores_them_as_given(
    settings: Settings, engine: AsyncEngine, smtps_server: SmtpTestServer
) -> None:
    """enqueue accepts a display name, an international domain and a named Bcc, stores them
    as written, and the worker sends them as it sends SQL rows."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    result = await enqueue_and_commit(
        engine,
        profile="test",
        to="Jan Kowalski <jan@example.pl>",
        cc=["anna@Zażółć.PL"],
        bcc="Tajny Odbiorca <tajny@example.pl>",
        subject="Faktura",
    )

    await run_until_empty(settings)

    stored = await row(settings, result.id)
    [received] = smtps_server.messages
    expected = (
        (
            ["Jan Kowalski <jan@example.pl>"],
            ["anna@Zażółć.PL"],
            ["Tajny Odbiorca <tajny@example.pl>"],
        ),
        "sent",
        ("jan@example.pl", f"anna@{ZAZOLC_PL}", "tajny@example.pl"),
        [("Jan Kowalski", "jan@example.pl")],
        -1,
    )
    actual = (
        (stored["to_addrs"], stored["cc_addrs"], stored["bcc_addrs"]),
        stored["status"],
        received.rcpt_tos,
        _mailboxes(received.parsed(), "To"),
        received.data.find(b"Tajny"),
    )
    assert expected == actual


def test_enqueue_takes_a_display_name_and_an_international_domain(
    cli_env: dict[str, str], settings: Settings
) -> None:
    """``mailworker enqueue --to 'Zażółć <you@example.com>' --to anna@zażółć.pl`` queues the
    message with the entries stored as written."""
    asyncio.run(add_profiles_at(cli_env["DATABASE_URL"]))
    args = ["--to", "Zażółć <you@example.com>", "--to", "anna@zażółć.pl", "--subject", "T"]
    result = CliRunner(env=cli_env).invoke(main, ["enqueue", *args, "--body", "x"])
    assert 0 == result.exit_code, result.output
    stored = asyncio.run(row(settings, int(result.stdout)))
    assert ["Zażółć <you@example.com>", "anna@zażółć.pl"] == stored["to_addrs"]


def test_enqueue_and_send_test_say_what_is_wrong_with_a_bad_address() -> None:
    """``--to 'zły adres@'`` is refused by both commands, before any database work, with what
    is wrong (a space before the @), and neither sends the person to the xn-- form."""
    enqueue = CliRunner(env=NO_DATABASE).invoke(
        main, ["enqueue", "--to", "zły adres@", "--subject", "T", "--body", "x"]
    )
    send_test = CliRunner(env=NO_DATABASE).invoke(
        main, ["send-test", "--to", "zły adres@", "--no-wait"]
    )
    problem = (
        "  - to address 'zły adres@' is not a valid e-mail address: The email address contains"
        " invalid characters before the @-sign: SPACE."
    )
    expected = ((1, True, False), (ExitCode.USAGE, True, False))
    actual = tuple(
        (outcome.exit_code, problem in outcome.output.splitlines(), "xn--" in outcome.output)
        for outcome in (enqueue, send_test)
    )
    assert expected == actual


def test_send_test_takes_a_display_name(cli_env: dict[str, str], settings: Settings) -> None:
    """``mailworker send-test --to 'Zażółć <you@example.com>'`` queues the test message."""
    asyncio.run(add_profiles_at(cli_env["DATABASE_URL"]))
    result = CliRunner().invoke(
        main, ["send-test", "--to", "Zażółć <you@example.com>", "--no-wait"], env=cli_env
    )
    assert 0 == result.exit_code, result.output
    stored = asyncio.run(row(settings, int(result.stdout)))
    assert (["Zażółć <you@example.com>"], "test") == (stored["to_addrs"], stored["kind"])


async def test_the_test_server_offers_smtputf8_only_when_asked(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """``smtputf8=True`` offers SMTPUTF8 and records UTF-8 addresses as sent; by default the
    extension is not offered and ``MAIL ... SMTPUTF8`` is refused with 501."""
    offering = smtp_server_factory(tls="none", smtputf8=True)
    plain = smtp_server_factory(tls="none")
    async with smtp_client(offering) as client:
        await client.ehlo()
        offered = client.supports_extension("smtputf8")
        await client.sendmail(
            "zażółć@example.pl",
            ["jaźń@example.pl"],
            b"Subject: x\r\n\r\nx\r\n",
            mail_options=["SMTPUTF8"],
        )
    async with smtp_client(plain) as client:
        await client.ehlo()
        not_offered = not client.supports_extension("smtputf8")
        reply = await client.execute_command(b"MAIL", b"FROM:<a@example.pl>", b"SMTPUTF8")
    [received] = offering.messages
    expected = (True, ("zażółć@example.pl", ("jaźń@example.pl",)), True, 501)
    actual = (offered, (received.mail_from, received.rcpt_tos), not_offered, reply.code)
    assert expected == actual


async def test_one_address_under_two_display_names_is_one_recipient_for_the_worker(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A row at the profile's recipient limit once duplicates are counted as one is sent: the
    worker counts as enqueue does (the address, ignoring case and display names)."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl", max_recipients_per_message=2)
    to = ["Jan Kowalski <jan@example.pl>", "JAN@example.pl", "anna@example.pl"]
    [message_id] = await enqueue(settings, to_addrs=to)

    await run_until_empty(settings)

    assert "sent" == (await row(settings, message_id))["status"]
