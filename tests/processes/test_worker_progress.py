"""A busy worker sums itself up: a progress line every few seconds, totals when it stops."""

from __future__ import annotations

import asyncio
import json

from structlog.testing import capture_logs

from tests.kit.commands import cli
from tests.kit.database import sql
from tests.kit.delivery import add_profile, enqueue, fast_settings, run_until_empty
from tests.kit.processes import WorkerProcesses
from tests.kit.smtp_server import SmtpTestServer
from worker.settings import Settings


async def test_progress_lines_and_totals_count_every_message(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Progress lines add up to what was done; ``worker_stopped`` carries the totals; the
    claims themselves are debug lines, not one more line per batch."""
    settings = fast_settings(settings, progress_interval=0.05)
    await add_profile(settings, smtps_server, encryption="ssl")
    await enqueue(settings, count=20)
    [bad] = await enqueue(settings, to_addrs=["bez-malpy.example.com"])
    smtps_server.script.on("DATA_END", reply="451 4.3.0 Try later", times=3)

    with capture_logs() as events:
        await run_until_empty(settings)

    progress = [event for event in events if event["event"] == "progress"]
    [stopped] = [event for event in events if event["event"] == "worker_stopped"]
    assert progress, [event["event"] for event in events]
    summed = {key: sum(line[key] for line in progress) for key in ("sent", "failed", "retried")}
    totals = {key: stopped[key] for key in ("sent", "failed", "retried")}
    assert {"sent": 20, "failed": 1, "retried": 3} == totals
    # Lines come while work goes on; what moved after the last one is in the totals only.
    assert all(0 <= summed[key] <= totals[key] for key in totals)
    assert summed["sent"] > 0
    assert all(line["pending"] is not None for line in progress)
    assert not [e for e in events if e["event"] == "messages_claimed" and e["log_level"] == "info"]
    [(status,)] = await sql(settings, "SELECT status FROM mail.outbox WHERE id = :id", id=bad)
    assert "failed" == status


async def test_log_lines_name_the_outbox_row_as_outbox_id(
    settings: Settings,
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
    cli_env: dict[str, str],
) -> None:
    """A message's log lines carry its row id as ``outbox_id``; ``message_id`` would be taken
    for the Message-ID header, which ``messages show`` calls that. ``send-test --json`` too."""
    await add_profile(settings, smtps_server, encryption="ssl")
    [first] = await enqueue(settings)
    worker = workers.start("ids", "--until-empty")
    assert 0 == await worker.wait_exit(within=30)
    queued = await asyncio.to_thread(
        cli,
        cli_env,
        "send-test",
        "--profile",
        "test",
        "--to",
        "anna@example.com",
        "--no-wait",
        "--json",
    )

    [sent] = worker.logged("mail_sent")
    assert (first, False) == (sent["outbox_id"], "message_id" in sent)
    assert {"outbox_id", "profile", "result"} == set(json.loads(queued.stdout))
