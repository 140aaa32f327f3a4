"""Leases across a PostgreSQL restart: a live worker gets one lease to renew before a reclaim.

While the database is down no worker can renew its leases, so an outage longer than the
lease leaves every claimed row with an expired lease, the rows of live workers too. The first
worker to run housekeeping after the restart must not take them away (and send them again)
before their owners could renew.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from chaos.postgres import PrivatePostgres
from tests.kit.delivery import add_profile
from tests.kit.processes import Probe, enqueue_numbered
from tests.kit.smtp_server import SmtpTestServer
from worker.repository import Repository
from worker.settings import Settings

pytestmark = pytest.mark.timeout(90)


async def _housekeeping(url: str, *, lease_seconds: float) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            return await Repository(connection).housekeeping(
                max_attempts=8, lease_seconds=lease_seconds
            )
    finally:
        await engine.dispose()


async def test_a_lease_that_ran_out_in_an_outage_is_not_reclaimed_at_once(
    settings: Settings,
    plain_server: SmtpTestServer,
    private_postgres: PrivatePostgres,
    private_probe: Probe,
) -> None:
    """Right after a restart an expired lease stays its owner's; a lease later it is reclaimed.

    ``lease_seconds=0`` stands for "a lease has passed since the restart", without waiting.
    """
    url = private_postgres.url
    private = settings.model_copy(update={"database_url": SecretStr(url)})
    await add_profile(private, plain_server, encryption="none", login=None, password=None)
    [message_id] = await enqueue_numbered(url, 1)
    await private_probe.query(
        "UPDATE mail.outbox SET status = 'sending', attempts = 1, claimed_by = 'alive',"
        " claimed_at = now() - interval '10 seconds',"
        " lease_expires_at = now() - interval '1 second' WHERE id = :id",
        id=message_id,
    )
    await asyncio.to_thread(private_postgres.restart)

    counts = await _housekeeping(url, lease_seconds=30)

    assert 0 == counts["reclaimed"]
    [row] = (await private_probe.rows()).values()
    assert "sending" == row.status
    assert [] == await private_probe.attempts()

    counts = await _housekeeping(url, lease_seconds=0)

    assert 1 == counts["reclaimed"]
    [row] = (await private_probe.rows()).values()
    assert "pending" == row.status
