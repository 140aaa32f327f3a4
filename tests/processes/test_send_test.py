"""``mailworker send-test`` end to end: the real CLI, a real worker process, real SMTP servers.

The command runs in this process through CliRunner, so the tests are plain functions (each
command runs its own ``asyncio.run``); the worker runs beside it as ``python -m worker run``,
as it would on a server. Every wait is bounded by the command's ``--timeout``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.kit.database import sql
from tests.kit.delivery import add_profile, attempts_of, row
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.processes import REPO_ROOT, WorkerProcess, WorkerProcesses
from tests.kit.smtp_fixtures import SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.cli import main
from worker.cli.exits import ExitCode
from worker.cli.send_test_command import DEFAULT_SUBJECT
from worker.settings import Settings

pytestmark = pytest.mark.timeout(90)

RECIPIENT = "odbiorca@example.com"
WRONG_PASSWORD = "zle-haslo-123"
# From the wp preset's auth_failure_hint in config/providers.toml.
WP_AUTH_HINT = "Check that access for mail programs is switched on in WP Poczta's settings"
NO_DATABASE = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}


def start_worker(workers: WorkerProcesses, **env: str) -> WorkerProcess:
    worker = workers.start("worker-a", env=env)
    asyncio.run(worker.wait_logged("worker_started"))
    return worker


def send_test(env: Mapping[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["send-test", *args], env=dict(env))


def field(output: str, label: str) -> str:
    """The value of the ``  label: value`` line of the command's report."""
    match = re.search(rf"^  {re.escape(label)}:\s+(.*)$", output, re.MULTILINE)
    assert match is not None, f"no {label!r} line in:\n{output}"
    return match[1]


def only_message(settings: Settings) -> Mapping[str, Any]:
    """The one outbox row the test made."""
    [(message_id,)] = asyncio.run(sql(settings, "SELECT id FROM mail.outbox"))
    return asyncio.run(row(settings, message_id))


def attempts(settings: Settings, message_id: int) -> list[Mapping[str, Any]]:
    return asyncio.run(attempts_of(settings, message_id))


def test_delivered_with_an_attachment_while_a_worker_runs(
    settings: Settings,
    cli_env: dict[str, str],
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
    tmp_path: Path,
) -> None:
    """A running worker sends the test message and the command reports it truthfully.

    The server receives it intact (the Polish subject, a body naming profile and server, the
    PDF byte for byte); the row is a sent ``test`` message of priority 100; the command exits
    0 and prints DELIVERED with host:port, the TLS version of the attempt and the reply.
    """
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    invoice = tmp_path / "faktura testowa.pdf"
    invoice.write_bytes(minimal_pdf())
    start_worker(workers)

    result = send_test(cli_env, "--profile", "test", "--to", RECIPIENT, "--attach", str(invoice))

    assert ExitCode.OK == result.exit_code, result.output + workers.report()
    [received] = smtps_server.wait_for_messages(1)
    parsed = received.parsed()
    assert DEFAULT_SUBJECT == parsed["subject"]
    body = parsed.get_body(("plain",))
    assert body is not None
    server = f"{smtps_server.hostname}:{smtps_server.port}"
    assert "Profil:  test (jankowalski@wp.pl)" in body.get_content()
    assert f"Serwer:  {server} (implicit TLS)" in body.get_content()
    [attachment] = list(parsed.iter_attachments())
    assert "faktura testowa.pdf" == attachment.get_filename()
    assert invoice.read_bytes() == attachment.get_content()
    message = only_message(settings)
    assert ("test", 100, "sent") == (message["kind"], message["priority"], message["status"])
    [attempt] = attempts(settings, message["id"])
    assert received.tls_version == attempt["tls_version"]
    assert result.stdout.startswith(f"DELIVERED: {server} accepted test message {message['id']}")
    assert f"{server}, {attempt['tls_version']} (implicit TLS)" == field(result.stdout, "server")
    assert message["smtp_response"] == field(result.stdout, "reply")
    assert message["smtp_response"].startswith("250 ")


def test_wrong_password_is_not_delivered_with_the_reason_and_the_providers_hint(
    settings: Settings,
    cli_env: dict[str, str],
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
) -> None:
    """A refused login answers at once: NOT DELIVERED, exit 1, the 535 reply and wp's advice.

    The server saw one login attempt and no message; the message spent no attempt and was
    withdrawn (cancelled), so it will not be sent later; neither password is printed.
    """
    asyncio.run(
        add_profile(settings, smtps_server, encryption="ssl", password=WRONG_PASSWORD, preset="wp")
    )
    start_worker(workers)

    result = send_test(cli_env, "--to", RECIPIENT, "--timeout", "30")

    assert ExitCode.NOT_OK == result.exit_code, result.output + workers.report()
    assert result.stdout.startswith("NOT DELIVERED: test message")
    assert field(result.stdout, "reason").startswith("535 5.7.8")
    assert field(result.stdout, "hint").startswith(WP_AUTH_HINT)
    assert "withdrawn (status cancelled): no worker will send it later" == field(
        result.stdout, "queue"
    )
    assert WRONG_PASSWORD not in result.output
    assert SMTP_PASSWORD not in result.output
    message = only_message(settings)
    assert ("cancelled", 0) == (message["status"], message["attempts"])
    assert ["deferred"] == [a["outcome"] for a in attempts(settings, message["id"])]
    assert 1 == len(smtps_server.auth_attempts)
    assert () == smtps_server.messages


def test_keep_queued_leaves_a_refused_message_pending_without_spending_attempts(
    settings: Settings,
    cli_env: dict[str, str],
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
) -> None:
    """With --keep-queued the refused test message is not lost: it waits, attempts unspent.

    The row stays pending with attempts 0 and its reason naming the pause, and the command
    says a worker will send it later (once the profile works) and how to withdraw it.
    """
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl", password=WRONG_PASSWORD))
    start_worker(workers)

    result = send_test(cli_env, "--to", RECIPIENT, "--timeout", "30", "--keep-queued")

    assert ExitCode.NOT_OK == result.exit_code, result.output + workers.report()
    assert field(result.stdout, "reason").startswith("535 5.7.8")
    assert "check the login and password of the profile" == field(result.stdout, "hint")
    queue = field(result.stdout, "queue")
    assert queue.startswith("still queued (--keep-queued): a worker will send it later")
    assert "UPDATE mail.outbox SET status = 'cancelled' WHERE id = " in queue
    message = only_message(settings)
    assert ("pending", 0) == (message["status"], message["attempts"])
    assert message["status_reason"].startswith("waiting: profile test paused until")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), ("cancelled", "withdrawn (status cancelled): no worker will send it later")),
        (("--keep-queued",), ("pending", "still queued (--keep-queued): a worker will send it")),
    ],
)
def test_no_worker_running_says_nobody_picked_it_up(
    settings: Settings,
    cli_env: dict[str, str],
    smtps_server: SmtpTestServer,
    options: tuple[str, ...],
    expected: tuple[str, str],
) -> None:
    """With no worker, the command says exactly that when --timeout runs out, and exits 3.

    The message was never picked up (no attempt) and is withdrawn, or left queued for a
    worker with --keep-queued; the output says which.
    """
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))

    status, queue = expected

    result = send_test(cli_env, "--to", RECIPIENT, "--timeout", "2", *options)

    assert ExitCode.STILL_WAITING == result.exit_code, result.output
    reason = "no worker picked the message up within 2 s — is `mailworker run` running?"
    assert reason == field(result.stdout, "reason")
    assert field(result.stdout, "queue").startswith(queue)
    message = only_message(settings)
    assert (status, 0) == (message["status"], message["attempts"])
    assert [] == attempts(settings, message["id"])
    assert () == smtps_server.messages


def test_picked_up_but_retrying_says_the_error_and_the_next_attempt(
    settings: Settings,
    cli_env: dict[str, str],
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
) -> None:
    """A temporary refusal is told apart from "not picked up": the reply and the next attempt.

    The worker retries only after two minutes, beyond the command's 20 s, so the command
    answers as soon as it sees that (exit 3) instead of waiting out its timeout.
    """
    smtps_server.script.on("DATA_END", reply="451 4.3.0 Try again later")
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    start_worker(workers, MAILWORKER_RETRY_BASE="240", MAILWORKER_RETRY_CAP="240")

    result = send_test(cli_env, "--to", RECIPIENT, "--timeout", "20")

    assert ExitCode.STILL_WAITING == result.exit_code, result.output + workers.report()
    assert field(result.stdout, "reason").startswith(
        "picked up, but not sent after 1 attempt(s); last error: 451 4.3.0 Try again later;"
        " next attempt at "
    )
    assert "no worker picked" not in result.stdout
    message = only_message(settings)
    assert ("cancelled", 1) == (message["status"], message["attempts"])


def test_a_permanent_refusal_is_not_delivered_with_the_servers_reply(
    settings: Settings,
    cli_env: dict[str, str],
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
) -> None:
    """A message the server refuses for good: NOT DELIVERED, exit 1, the 554 reply; it is failed."""
    smtps_server.script.on("DATA_END", reply="554 5.6.0 Message content rejected")
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    start_worker(workers)

    result = send_test(cli_env, "--to", RECIPIENT, "--timeout", "30", "--json")

    assert ExitCode.NOT_OK == result.exit_code, result.output + workers.report()
    answer = json.loads(result.stdout)
    assert "not_delivered" == answer["result"]
    assert "554 5.6.0 Message content rejected" == answer["reason"]
    assert ("failed", "final") == (answer["status"], answer["queue"])
    assert "failed" == only_message(settings)["status"]


def test_no_wait_prints_the_id_and_leaves_the_message_queued(
    settings: Settings, cli_env: dict[str, str], smtps_server: SmtpTestServer
) -> None:
    """--no-wait queues the test message and prints its id alone; exit 0, no waiting."""
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))

    result = send_test(cli_env, "--to", RECIPIENT, "--no-wait", "--subject", "Próba łączności")

    assert ExitCode.OK == result.exit_code, result.output
    message = only_message(settings)
    assert f"{message['id']}\n" == result.stdout
    assert ("pending", "test", 100) == (message["status"], message["kind"], message["priority"])
    assert "Próba łączności" == message["subject"]
    assert message["body_text"].startswith("Dzień dobry,")


def test_usage_mistakes_exit_2_and_queue_nothing(
    settings: Settings, cli_env: dict[str, str], smtp_server_factory: SmtpServerFactory
) -> None:
    """An unknown profile or a bad address is a usage mistake (exit 2); nothing is queued."""
    asyncio.run(
        add_profile(
            settings, smtp_server_factory(tls="none"), encryption="none", login=None, password=None
        )
    )

    unknown = send_test(cli_env, "--profile", "nie-ma", "--to", RECIPIENT, "--no-wait")
    bad_address = send_test(cli_env, "--to", "not-an-address", "--timeout", "1")

    assert ExitCode.USAGE == unknown.exit_code, unknown.output
    assert "no profile is named 'nie-ma'" in unknown.output
    assert ExitCode.USAGE == bad_address.exit_code, bad_address.output
    assert "the test message was not queued" in bad_address.output
    assert [] == asyncio.run(sql(settings, "SELECT id FROM mail.outbox"))


def test_an_unreachable_database_exits_4_not_1(cli_env: dict[str, str]) -> None:
    """The command failing (no database) is never mistaken for "not delivered": exit 4."""
    result = send_test({**cli_env, **NO_DATABASE}, "--to", RECIPIENT, "--timeout", "1")

    assert ExitCode.ERROR == result.exit_code, result.output
    assert "cannot reach the database server" in result.output


def test_interrupting_the_wait_withdraws_the_message(
    settings: Settings, cli_env: dict[str, str], smtps_server: SmtpTestServer
) -> None:
    """Ctrl-C while waiting withdraws the queued test message, says so, and exits 130.

    The command runs as a real process (``python -m worker send-test``), with no worker, and
    gets SIGINT once its message is in the outbox.
    """
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    command = [sys.executable, "-m", "worker", "send-test", "--to", RECIPIENT, "--timeout", "60"]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not asyncio.run(sql(settings, "SELECT id FROM mail.outbox")):
            assert time.monotonic() < deadline, "the command queued nothing within 20 s"
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        time.sleep(0.5)  # past the commit, into the wait
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait(timeout=10)

    assert ExitCode.INTERRUPTED == process.returncode, stderr.decode()
    message = only_message(settings)
    assert f"interrupted: test message {message['id']} was withdrawn" in stderr.decode()
    assert b"" == stdout
    assert ("cancelled", 0) == (message["status"], message["attempts"])
