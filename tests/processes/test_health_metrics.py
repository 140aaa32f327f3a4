"""``/healthz`` and ``/metrics``, scraped with real HTTP clients while a worker really runs.

Workers run in this process (their port is ``worker.http_port``) or as ``mailworker run``
(the port is in the ``http_listening`` log line), always on 127.0.0.1 port 0, and send through
real SMTP test servers. Requests go through urllib in a thread, or raw asyncio streams for
requests no decent client would make.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.kit.database import sql
from tests.kit.delivery import add_profile, enqueue, fast_settings
from tests.kit.live_worker import Samples, http_get, parse_metrics, running_worker
from tests.kit.processes import (
    Probe,
    WorkerProcesses,
    enqueue_numbered,
    wait_until,
)
from tests.kit.smtp_server import Event, SmtpTestServer
from worker import health
from worker.errors import ConfigurationError
from worker.health import HttpEndpoint, WorkerState
from worker.metrics import WorkerMetrics
from worker.settings import Settings

pytestmark = pytest.mark.timeout(60)


# --- clients -----------------------------------------------------------------------------------


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def by_label(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples called ``name``, keyed by the values of ``labels``."""
    found = {}
    for (sample, label_items), value in samples.items():
        if sample == name:
            values = dict(label_items)
            found[tuple(values[label] for label in labels)] = value
    return found


def per_profile(samples: Samples, name: str) -> dict[str, float]:
    return {profile: value for (profile,), value in by_label(samples, name, "profile").items()}


def free_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


# --- scripts -----------------------------------------------------------------------------------


def _to(recipient: str) -> Callable[[Event], bool]:
    """A script ``match=`` for the transactions that send to ``recipient``."""

    def matches(event: Event) -> bool:
        return recipient in event.rcpt_tos

    return matches


async def _outbox_settled(settings: Settings) -> bool:
    """Profile test: 4 sent, 1 failed; capped: 3 sent; locked: paused, 2 deferred attempts."""
    statuses = await sql(
        settings, "SELECT profile, status, count(*) FROM mail.outbox GROUP BY profile, status"
    )
    locked = await sql(
        settings,
        "SELECT count(*) FROM mail.attempt a JOIN mail.profile p ON p.name = a.profile"
        " WHERE a.profile = 'locked' AND p.paused_until IS NOT NULL",
    )
    expected = {
        ("test", "sent"): 4,
        ("test", "failed"): 1,
        ("capped", "sent"): 3,
        ("locked", "pending"): 2,
    }
    return expected == {(p, s): n for p, s, n in statuses} and [(2,)] == [tuple(r) for r in locked]


async def test_metrics_show_what_the_worker_did_and_what_the_database_holds(
    settings: Settings, plain_server: SmtpTestServer, smtps_server: SmtpTestServer
) -> None:
    """Scraped during a run, /metrics gives each profile's outcomes and the database's state.

    Profile ``test``: three sent, one refused for good (554), one retried once (451) and then
    sent. Profile ``capped`` (daily cap 5): three sent, so 3 used and 2 remaining. Profile
    ``locked`` (wrong password): paused with the server's reply, its two messages waiting.
    The latency histogram has one observation per recorded attempt; the queue gauges equal
    the database's counts; /healthz answers 200 throughout, and the port is closed after.
    """
    settings = fast_settings(settings, http_address="127.0.0.1:0")
    no_auth = {"encryption": "none", "login": None, "password": None}
    await add_profile(settings, plain_server, **no_auth)
    await add_profile(settings, plain_server, name="capped", daily_cap=5, **no_auth)
    await add_profile(
        settings, smtps_server, name="locked", encryption="ssl", password="wrong-password"
    )
    plain_server.script.on(
        "DATA_END", reply="554 5.6.0 Message content rejected", match=_to("refused@example.com")
    )
    plain_server.script.once(
        "DATA_END", reply="451 4.3.0 Try again later", match=_to("later@example.com")
    )
    await enqueue(settings, count=3)
    await enqueue(settings, to_addrs=["refused@example.com"])
    await enqueue(settings, to_addrs=["later@example.com"])
    await enqueue(settings, count=3, profile="capped")
    await enqueue(settings, count=2, profile="locked")

    async with running_worker(settings) as worker:
        assert worker.http_port is not None
        port = worker.http_port
        await wait_until(
            lambda: _outbox_settled(settings),
            within=30,
            what="all sent, failed or paused",
        )
        status, headers, body = await http_get(port, "/metrics")
        health_status, health_headers, health_body = await http_get(port, "/healthz")
        [(database_age,)] = await sql(
            settings,
            "SELECT extract(epoch FROM now() - min(created_at)) FROM mail.outbox"
            " WHERE status = 'pending'",
        )

    assert 200 == status
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(body)
    # What the worker did.
    assert {"test": 4, "capped": 3} == per_profile(samples, "mailworker_messages_sent_total")
    assert {"test": 1} == per_profile(samples, "mailworker_messages_failed_total")
    assert {"test": 1} == per_profile(samples, "mailworker_messages_retried_total")
    assert {"locked": 2} == per_profile(samples, "mailworker_messages_deferred_total")
    attempts = await sql(
        settings,
        "SELECT profile, count(*), sum(extract(epoch FROM finished_at - started_at))"
        " FROM mail.attempt GROUP BY profile",
    )
    assert {"test": 6, "capped": 3, "locked": 2} == {p: n for p, n, _ in attempts}
    assert {p: n for p, n, _ in attempts} == per_profile(
        samples, "mailworker_attempt_duration_seconds_count"
    )
    durations = per_profile(samples, "mailworker_attempt_duration_seconds_sum")
    assert {p: pytest.approx(float(total)) for p, _, total in attempts} == durations
    # What the database holds.
    assert 1 == samples[("mailworker_database_up", ())]
    queue = await sql(
        settings,
        "SELECT profile, status, count(*) FROM mail.outbox"
        " WHERE status IN ('pending', 'sending') GROUP BY profile, status",
    )
    expected_queue = {
        (profile, state): 0.0
        for profile in ("capped", "locked", "test")
        for state in ("pending", "sending")
    }
    expected_queue.update({(p, s): n for p, s, n in queue})
    assert 2 == expected_queue[("locked", "pending")]
    assert expected_queue == by_label(samples, "mailworker_queue_messages", "profile", "status")
    ages = per_profile(samples, "mailworker_oldest_pending_age_seconds")
    assert (0.0, 0.0) == (ages["test"], ages["capped"])
    assert float(database_age) - 10 < ages["locked"] <= float(database_age)
    caps = {
        name: by_label(samples, f"mailworker_cap_{name}", "profile", "cap")
        for name in ("limit", "used", "remaining")
    }
    key = ("capped", "daily_messages")
    assert {"limit": {key: 5}, "used": {key: 3}, "remaining": {key: 2}} == caps
    [locked] = await sql(
        settings, "SELECT paused_until, pause_reason FROM mail.profile WHERE name = 'locked'"
    )
    assert locked.pause_reason.startswith("535 ")
    paused = by_label(
        samples, "mailworker_profile_paused_until_timestamp_seconds", "profile", "reason"
    )
    # The label is the kind of reason; the server's words stay in the profile.
    assert {("locked", "credentials"): pytest.approx(locked.paused_until.timestamp())} == paused
    assert 0 == samples[("mailworker_messages_in_flight", ())]
    # Health, while it ran; and nothing listens once it stopped.
    assert (200, "application/json") == (health_status, health_headers["Content-Type"])
    checks = {"database": "ok", "loop": "ok", "claim": "ok", "running": "ok"}
    assert {"status": "ok", "worker": worker.name, "checks": checks} == json.loads(health_body)
    with pytest.raises(urllib.error.URLError):
        await http_get(port, "/healthz")


async def test_healthz_is_503_while_the_database_is_unreachable(
    secret_key: str, tmp_path: Path
) -> None:
    """A worker whose database refuses connections keeps running and answers 503 with why.

    Only the database check fails; /metrics still answers, with ``mailworker_database_up 0``
    and none of the gauges read from the database.
    """
    unreachable = make_url("postgresql+asyncpg://mail:pw@127.0.0.1/mail").set(port=free_port())
    settings = fast_settings(
        Settings(
            database_url=SecretStr(unreachable.render_as_string(hide_password=False)),
            secret_key=secret_key,
            data_dir=tmp_path / "data",
        ),
        http_address="127.0.0.1:0",
    )

    async with running_worker(settings, listening=False) as worker:
        assert worker.http_port is not None
        status, headers, body = await http_get(worker.http_port, "/healthz")
        metrics_status, _, metrics_body = await http_get(worker.http_port, "/metrics")

    assert (503, "application/json") == (status, headers["Content-Type"])
    answer = json.loads(body)
    assert ("unhealthy", ["database"]) == (answer["status"], answer["failing"])
    assert answer["checks"]["database"].startswith("unreachable: ")
    assert "pw" not in answer["checks"]["database"]
    samples = parse_metrics(metrics_body)
    assert 200 == metrics_status
    assert 0 == samples[("mailworker_database_up", ())]
    assert {} == by_label(samples, "mailworker_queue_messages", "profile", "status")


async def test_mailworker_run_serves_the_endpoint_from_its_settings(
    settings: Settings,
    database_url: str,
    cli_env: dict[str, str],
    plain_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    """``mailworker run`` with MAILWORKER_HTTP_ADDRESS logs its port, serves it, frees it at exit.

    Three messages sent by the process show in its /metrics; /healthz says 200; after SIGTERM
    the process exits 0 and the port is closed.
    """
    await add_profile(settings, plain_server, encryption="none", login=None, password=None)
    processes = WorkerProcesses(cli_env, tmp_path)
    probe = Probe(database_url)
    try:
        worker = processes.start("observed", env={"MAILWORKER_HTTP_ADDRESS": "127.0.0.1:0"})
        listening = await worker.wait_logged("http_listening")
        port = int(listening["port"])
        await enqueue_numbered(database_url, 3)
        await processes.wait_sent(probe, 3, within=20)

        health_status, _, _ = await http_get(port, "/healthz")
        _, _, body = await http_get(port, "/metrics")
        worker.send_signal(signal.SIGTERM)
        assert 0 == await worker.wait_exit(within=15)
    finally:
        processes.kill_all()
        await probe.dispose()

    assert ("127.0.0.1", 200) == (listening["host"], health_status)
    assert {"test": 3} == per_profile(parse_metrics(body), "mailworker_messages_sent_total")
    with pytest.raises(urllib.error.URLError):
        await http_get(port, "/healthz")


async def test_an_address_in_use_stops_the_worker_before_it_claims(settings: Settings) -> None:
    """A taken port fails the start with the setting's name; nothing is claimed or sent."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = fast_settings(settings, http_address=f"127.0.0.1:{port}")
        [message_id] = await enqueue(settings)

        with pytest.raises(ConfigurationError, match=r"MAILWORKER_HTTP_ADDRESS.*in use"):
            async with running_worker(settings):
                pass  # pragma: no cover - the worker must not start

    [(status, attempts)] = await sql(
        settings, "SELECT status, attempts FROM mail.outbox WHERE id = :id", id=message_id
    )
    assert ("pending", 0) == (status, attempts)


# --- the HTTP server itself ----------------------------------------------------------------------


@pytest.fixture
async def bare_endpoint(database_url: str) -> AsyncIterator[HttpEndpoint]:
    """An endpoint on 127.0.0.1:0 over this test's database, with no worker behind it."""
    engine = create_async_engine(database_url)
    endpoint = HttpEndpoint(
        address="127.0.0.1:0",
        engine=engine,
        metrics=WorkerMetrics(),
        state=lambda: WorkerState(saturated=False, stopping=False),
        worker="bare",
        stale_after=60,
    )
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.close()
        await engine.dispose()


def _status_line(response: bytes) -> bytes:
    return response.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed"),
        (b"hello there\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (
            b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ],
)
async def test_requests_outside_the_two_paths_get_a_plain_error(
    bare_endpoint: HttpEndpoint, request_bytes: bytes, expected: bytes
) -> None:
    """Unknown paths, other methods, garbage and oversized heads get their status, then close."""
    assert bare_endpoint.port is not None
    response = await raw_exchange(bare_endpoint.port, request_bytes)
    assert expected == _status_line(response)
    assert b"Connection: close" in response


async def test_head_gives_the_headers_of_get_without_a_body(bare_endpoint: HttpEndpoint) -> None:
    """HEAD /healthz: the status and Content-Length a GET would give, and no body bytes."""
    assert bare_endpoint.port is not None
    port = bare_endpoint.port
    get = await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await raw_exchange(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    get_head, get_body = get.split(b"\r\n\r\n", 1)
    assert (b"HTTP/1.1 200 OK", b"") == (_status_line(head), head.split(b"\r\n\r\n", 1)[1])
    assert f"Content-Length: {len(get_body)}".encode() in head
    assert get_head == head.split(b"\r\n\r\n", 1)[0]


async def test_openmetrics_is_served_when_asked_for(bare_endpoint: HttpEndpoint) -> None:
    """A scraper that accepts OpenMetrics gets it (its content type, ending in # EOF)."""
    assert bare_endpoint.port is not None
    accept = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
    status, headers, body = await http_get(bare_endpoint.port, "/metrics", accept=accept)
    assert 200 == status
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


async def test_a_silent_client_is_dropped_within_the_request_timeout(
    bare_endpoint: HttpEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that never sends a request is closed by the server, not held forever."""
    monkeypatch.setattr(health, "REQUEST_TIMEOUT", 0.3)
    assert bare_endpoint.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", bare_endpoint.port)
    try:
        assert b"" == await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
