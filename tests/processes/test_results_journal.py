"""Stopped during a database outage, a worker keeps its results on disk; the next start writes them.

The issue's reproduction: PostgreSQL stops while the server is taking a message, the server
says 250, the worker gets SIGTERM. Before, the result was lost at exit (``results_not_written``,
exit 0), the lease ran out and the next worker sent the message a second time.
"""

from __future__ import annotations

import asyncio
import signal
import threading

import pytest
from pydantic import SecretStr

from chaos.postgres import PrivatePostgres
from tests.kit.delivery import add_profile
from tests.kit.processes import Probe, WorkerProcesses, enqueue_numbered
from tests.kit.smtp_server import Event, SmtpTestServer
from worker.settings import Settings

pytestmark = pytest.mark.timeout(120)
JOURNAL_DIR = "results-journal"  # under the data folder, as docs/reliability.md says
HOLD_SECONDS = 60.0


class _HeldAtDataEnd:
    """Holds the server after the message's last byte, before its reply, until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: Event) -> bool:
        self.reached.set()
        self.release.wait(HOLD_SECONDS)  # the server's thread: only this transaction waits
        return False  # then the usual 250: the message is recorded and accepted


async def test_results_left_at_a_stop_during_an_outage_are_written_by_the_next_start(
    settings: Settings,
    plain_server: SmtpTestServer,
    private_postgres: PrivatePostgres,
    private_probe: Probe,
    workers: WorkerProcesses,
) -> None:
    """Exit code 5 and a journal file; the next start writes the result, the message goes once."""
    url = private_postgres.url
    private = settings.model_copy(update={"database_url": SecretStr(url)})
    await add_profile(private, plain_server, encryption="none", login=None, password=None)
    [message_id] = await enqueue_numbered(url, 1)
    held = _HeldAtDataEnd()
    plain_server.script.once("DATA_END", reply="250 never used", match=held)
    data_dir = settings.data_dir.parent / "worker-data"
    env = {"DATABASE_URL": url, "MAILWORKER_DATA_DIR": str(data_dir)}

    first = workers.start("first", env=env)
    try:
        assert await asyncio.to_thread(held.reached.wait, 30), first.describe()
        await asyncio.to_thread(private_postgres.stop)
    finally:
        held.release.set()  # the server says 250 while the database is down
    await first.wait_logged("mail_sent")
    first.send_signal(signal.SIGTERM)
    exit_code = await first.wait_exit(within=30)
    journal = sorted((data_dir / JOURNAL_DIR).glob("*.json"))

    await asyncio.to_thread(private_postgres.start)
    second = workers.start("second", "--until-empty", env=env)
    second_exit = await second.wait_exit(within=60)

    assert 5 == exit_code, first.describe()
    assert 1 == len(journal), first.describe()
    assert 1 == len(first.logged("results_journaled"))
    assert 0 == second_exit, second.describe()
    assert 1 == len(second.logged("journal_replayed"))
    assert [] == sorted((data_dir / JOURNAL_DIR).glob("*.json"))  # written, then removed
    [(status, attempts)] = await private_probe.query(
        "SELECT status, (SELECT count(*) FROM mail.attempt WHERE outbox_id = :id)"
        " FROM mail.outbox WHERE id = :id",
        id=message_id,
    )
    assert ("sent", 1) == (status, attempts)
    assert 1 == len(plain_server.messages)
