"""``mailworker send-test`` through the guide's three accounts, end to end.

Each profile is made with the real CLI from the provider's preset and the guide's values
(display name, reply-to, description, encryption auto, the guide's login and password); only
the server's address, its port and the test CA lead it to a local server that answers as the
provider does (``tests/kit/provider_servers.py``). The command runs in this process through
CliRunner while a worker runs beside it as ``python -m worker run``; every wait is bounded by
the command's ``--timeout``. WP is reached over STARTTLS on a free port (the guide's 587, "not
465"); Onet and Gmail on port 465, which the fixture skips where it cannot be bound.

A test message that is not delivered is withdrawn by send-test (status ``cancelled``, the
reason in its row), as the command documents: it never turns up hours later, and it is not
lost either — the row stays, with no attempt spent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.kit.database import sql
from tests.kit.delivery import attempts_of, row
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.processes import WorkerProcesses
from tests.kit.provider_servers import (
    GMAIL,
    GMAIL_ACCOUNT_PASSWORD,
    ONET,
    WP,
    ProviderAccount,
    ProviderServers,
)
from tests.kit.smtp_server import ACCEPTED_REPLY, SmtpTestCA, SmtpTestServer
from worker.cli import main
from worker.cli.exits import ExitCode
from worker.presets import load_presets
from worker.settings import Settings

pytestmark = pytest.mark.timeout(90)

PRESETS = load_presets()
DISPLAY_NAME = "Comarch DMS - powiadomienia"
DESCRIPTION = "Konto do wysyłania powiadomień Comarch DMS"
ATTACHMENT = "Faktura zakupu FZ4 23.pdf"
RECIPIENT = "odbiorca@example.com"
WRONG_PASSWORD = "Zle-Haslo-1"
TLS_VERSIONS = frozenset({"TLSv1.2", "TLSv1.3"})
# The profile's connect/read timeout: short, so a server that never answers fails soon.
PROFILE_TIMEOUT = "5"
# A refusal is an answer at once; this only bounds a test whose worker never answers.
SEND_TIMEOUT = "30"
WITHDRAWN = "withdrawn (status cancelled): no worker will send it later"


def start_worker(workers: WorkerProcesses) -> None:
    worker = workers.start("worker-a")
    asyncio.run(worker.wait_logged("worker_started"))


def mailworker(env: Mapping[str, str], *args: str, **extra_env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**env, **extra_env})


def add_guide_profile(
    env: Mapping[str, str],
    account: ProviderAccount,
    server: SmtpTestServer,
    ca: SmtpTestCA,
    *,
    password: str,
) -> str:
    """The account as the guide fills it in, reaching ``server``; the profile's name."""
    name = f"comarch-dms-{account.preset}"
    result = mailworker(
        env,
        *["profiles", "add", name, "--preset", account.preset],
        *["--from", account.address, "--display-name", DISPLAY_NAME],
        *["--reply-to", account.address, "--description", DESCRIPTION],
        *["--host", server.hostname, "--port", str(server.port), "--encryption", "auto"],
        *["--auth", "login", "--login", account.login, "--password-env", "GUIDE_PASSWORD"],
        *["--ca-bundle", ca.cert_bundle, "--timeout", PROFILE_TIMEOUT],
        GUIDE_PASSWORD=password,
    )
    assert 0 == result.exit_code, result.output
    return name


def send_test(env: Mapping[str, str], name: str, *args: str) -> Result:
    return mailworker(env, "send-test", "--profile", name, "--to", RECIPIENT, *args)


def field(output: str, label: str) -> str:
    """The value of the ``  label: value`` line of the command's report."""
    match = re.search(rf"^  {re.escape(label)}:\s+(.*)$", output, re.MULTILINE)
    assert match is not None, f"no {label!r} line in:\n{output}"
    return match[1]


def one_line(text: str) -> str:
    return " ".join(text.split())


def messages(settings: Settings) -> list[Mapping[str, Any]]:
    """Every outbox row, oldest first."""
    ids = asyncio.run(sql(settings, "SELECT id FROM mail.outbox ORDER BY id"))
    return [asyncio.run(row(settings, message_id)) for (message_id,) in ids]


def withdrawn_reason(reason: str) -> str:
    """The row's reason once send-test has withdrawn a message it was told ``reason`` about."""
    return f"cancelled: mailworker send-test withdrew the test message ({reason})"


def start_server(provider_servers: ProviderServers, account: ProviderAccount) -> SmtpTestServer:
    """WP as the guide has it (587: STARTTLS on a port other than 465); Onet, Gmail on 465."""
    if account is WP:
        return provider_servers.wp(tls="starttls")
    if account is ONET:
        return provider_servers.onet()
    return provider_servers.gmail()


# --- delivered -------------------------------------------------------------------------------


@pytest.mark.parametrize("account", [WP, ONET, GMAIL], ids=["wp-587", "onet-465", "gmail-465"])
def test_the_guide_account_delivers_the_test_email_with_a_pdf(  # noqa: PLR0917 - pytest passes fixtures positionally
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
    workers: WorkerProcesses,
    tmp_path: Path,
    account: ProviderAccount,
) -> None:
    """send-test through the guide's profile exits 0 and says DELIVERED with the server's
    host:port, the TLS version and its reply; the server got the message from the guide's
    login over TLS, with the guide's From and Reply-To and the PDF byte for byte."""
    server = start_server(provider_servers, account)
    name = add_guide_profile(cli_env, account, server, smtp_ca, password=account.typed_password)
    pdf = tmp_path / ATTACHMENT
    pdf.write_bytes(minimal_pdf())
    start_worker(workers)

    result = send_test(cli_env, name, "--attach", str(pdf), "--timeout", SEND_TIMEOUT)

    assert ExitCode.OK == result.exit_code, result.output + workers.report()
    [message] = messages(settings)
    [attempt] = asyncio.run(attempts_of(settings, message["id"]))
    hostport = f"{server.hostname}:{server.port}"
    encryption = "STARTTLS" if account is WP else "implicit TLS"
    assert (
        f"DELIVERED: {hostport} accepted test message {message['id']}",
        ("sent", 1, ACCEPTED_REPLY),
        ACCEPTED_REPLY,
        True,
    ) == (
        result.stdout.splitlines()[0],
        (message["status"], message["attempts"], message["smtp_response"]),
        field(result.stdout, "reply"),
        attempt["tls_version"] in TLS_VERSIONS,
    )
    assert field(result.stdout, "server").startswith(f"{hostport}, {attempt['tls_version']} (")
    assert encryption in field(result.stdout, "server")
    [received] = server.wait_for_messages(1)
    parsed = received.parsed()
    assert {
        "login": account.login,
        "over TLS": True,
        "From": f"{DISPLAY_NAME} <{account.address}>",
        "Reply-To": account.address,
        "envelope": (account.address, (RECIPIENT,)),
        "attachments": [(ATTACHMENT, "application/pdf", minimal_pdf())],
    } == {
        "login": received.login,
        "over TLS": received.tls_version == attempt["tls_version"],
        "From": str(parsed["From"]),
        "Reply-To": str(parsed["Reply-To"]),
        "envelope": (received.mail_from, received.rcpt_tos),
        "attachments": [
            (part.get_filename(), part.get_content_type(), part.get_content())
            for part in parsed.iter_attachments()
        ],
    }


# --- not delivered: the message waits, no attempt spent --------------------------------------


def test_a_wrong_wp_password_is_not_delivered_with_wps_advice(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
    workers: WorkerProcesses,
) -> None:
    """WP refuses a wrong password with 535: exit 1, NOT DELIVERED with the 535 reply and
    WP's advice to switch on access for mail programs; the row stays (withdrawn by send-test,
    with the reason) and no attempt was spent; the server got no message."""
    server = provider_servers.wp(tls="starttls")
    name = add_guide_profile(cli_env, WP, server, smtp_ca, password=WRONG_PASSWORD)
    start_worker(workers)

    result = send_test(cli_env, name, "--timeout", SEND_TIMEOUT)

    assert ExitCode.NOT_OK == result.exit_code, result.output + workers.report()
    reason = "535 5.7.8 Authentication credentials invalid"
    hint = one_line(PRESETS["wp"].auth_failure_hint)
    assert "access for mail programs" in hint
    [message] = messages(settings)
    assert (
        f"NOT DELIVERED: test message {message['id']}",
        reason,
        hint,
        WITHDRAWN,
        ("cancelled", 0, withdrawn_reason(reason)),
        (),
    ) == (
        result.stdout.splitlines()[0],
        field(result.stdout, "reason"),
        field(result.stdout, "hint"),
        field(result.stdout, "queue"),
        (message["status"], message["attempts"], message["status_reason"]),
        server.messages,
    )
    assert WRONG_PASSWORD not in result.output


def test_gmails_account_password_is_not_delivered_asking_for_an_app_password(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
    workers: WorkerProcesses,
) -> None:
    """Gmail answers the account's normal password with 534 5.7.9: exit 1, NOT DELIVERED with
    that reply and the advice to create an app password; the row stays (withdrawn, with the
    reason), no attempt spent, no message at the server."""
    server = provider_servers.gmail()
    name = add_guide_profile(cli_env, GMAIL, server, smtp_ca, password=GMAIL_ACCOUNT_PASSWORD)
    start_worker(workers)

    result = send_test(cli_env, name, "--timeout", SEND_TIMEOUT)

    assert ExitCode.NOT_OK == result.exit_code, result.output + workers.report()
    reason = (
        "534 5.7.9 Application-specific password required. Learn more at 5.7.9"
        " https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp"
    )
    hint = one_line(PRESETS["gmail"].auth_failure_hint)
    assert hint.startswith("534 5.7.9 means an app password is required")
    [message] = messages(settings)
    assert (
        reason,
        hint,
        WITHDRAWN,
        ("cancelled", 0, withdrawn_reason(reason)),
        (),
    ) == (
        field(result.stdout, "reason"),
        field(result.stdout, "hint"),
        field(result.stdout, "queue"),
        (message["status"], message["attempts"], message["status_reason"]),
        server.messages,
    )
    assert GMAIL_ACCOUNT_PASSWORD not in result.output


def test_gmails_daily_limit_is_not_delivered_and_pauses_the_profile(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
    workers: WorkerProcesses,
) -> None:
    """After one delivered test message Gmail refuses the next with 550 5.4.5: exit 1, NOT
    DELIVERED, naming the provider's daily sending limit and the profile's pause; the second
    row stays (withdrawn, with the reason), no attempt spent; the server holds one message."""
    server = provider_servers.gmail(daily_limit=1)
    name = add_guide_profile(cli_env, GMAIL, server, smtp_ca, password=GMAIL.typed_password)
    start_worker(workers)
    first = send_test(cli_env, name, "--timeout", SEND_TIMEOUT)
    assert ExitCode.OK == first.exit_code, first.output + workers.report()

    result = send_test(cli_env, name, "--timeout", SEND_TIMEOUT)

    assert ExitCode.NOT_OK == result.exit_code, result.output + workers.report()
    reason = (
        "the provider's sending limit was reached: 550 5.4.5 Daily user sending limit exceeded."
        " For more information on Gmail 5.4.5 sending limits go to"
        " https://support.google.com/a/answer/166852 - gsmtp"
    )
    [sent, refused] = messages(settings)
    assert (
        reason,
        WITHDRAWN,
        ("sent", 1),
        ("cancelled", 0, withdrawn_reason(reason)),
        1,
    ) == (
        field(result.stdout, "reason"),
        field(result.stdout, "queue"),
        (sent["status"], sent["attempts"]),
        (refused["status"], refused["attempts"], refused["status_reason"]),
        len(server.messages),
    )
    # The pause itself: the profile rests until the first send of the day turns a day old.
    [(paused_until, pause_reason)] = asyncio.run(
        sql(
            settings,
            "SELECT paused_until, pause_reason FROM mail.profile WHERE name = :name",
            name=name,
        )
    )
    assert reason == pause_reason
    assert sent["sent_at"] + timedelta(hours=24) <= paused_until
    # The command says the profile is paused, until when, and that waiting is the fix.
    paused_words = f"profile {name} is paused until {paused_until:%Y-%m-%dT%H:%M:%SZ}"
    assert (
        paused_words,
        "wait: the profile resumes by itself when the provider's window has room again",
    ) == (field(result.stdout, "paused"), field(result.stdout, "next"))
