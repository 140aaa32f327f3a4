"""Fixing a paused profile (``profiles edit``) sends its waiting messages at once.

The pause ends in the database, its messages are due again, the listening workers are woken,
and a running worker forgets its own memory of the pause.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from tests.kit.database import sql
from tests.kit.delivery import add_profile, enqueue, fast_settings, row
from tests.kit.live_worker import running_worker
from tests.kit.processes import wait_until
from tests.kit.smtp_fixtures import SMTP_PASSWORD
from tests.kit.smtp_server import SmtpTestServer
from worker.cli import main
from worker.settings import Settings


async def test_fixing_the_password_sends_the_waiting_messages_at_once(
    settings: Settings, cli_env: dict[str, str], smtps_server: SmtpTestServer
) -> None:
    """Wrong password: paused for 60 s. The edit with the right one: all 3 sent within seconds.

    A fourth message scheduled an hour ahead (not_before) keeps waiting for its time.
    """
    settings = fast_settings(settings, poll_interval=60, housekeeping_interval=60)
    await add_profile(settings, smtps_server, encryption="ssl", password="wrong-password")
    ids = await enqueue(settings, count=3)
    [later] = await enqueue(settings, not_before=datetime.now(UTC) + timedelta(hours=1))

    async def paused() -> bool:
        [profile] = await sql(settings, "SELECT paused_until FROM mail.profile")
        return profile.paused_until is not None

    async def all_sent() -> bool:
        return len(smtps_server.messages) == len(ids)

    async with running_worker(settings):
        await wait_until(paused, within=10, what="the profile paused")
        edited = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            ["profiles", "edit", "test", "--password-stdin"],
            input=SMTP_PASSWORD,
            env=cli_env,
        )
        assert 0 == edited.exit_code, edited.output
        await wait_until(all_sent, within=10, what="the waiting messages at the server")

    assert {"sent"} == {(await row(settings, message_id))["status"] for message_id in ids}
    scheduled = await row(settings, later)
    assert "pending" == scheduled["status"]
    assert scheduled["next_attempt_at"] >= scheduled["not_before"]
