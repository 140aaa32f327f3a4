"""The development capture server of ``mailworker run --dev-smtp`` (what ``make run`` starts).

A fresh checkout has no mail account: the worker then runs a local SMTP server that keeps each
message as an ``.eml`` file under ``<data_dir>/devmail/`` and a profile ``local`` that sends to
it. These tests run it in-process (the server, the profile rules) and as the real CLI.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
import socket
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from tests.kit.processes import Probe, WorkerProcesses, wait_until
from worker.cli import main
from worker.devmail import (
    DEV_FOLDER,
    DEV_HOST,
    DEV_PROFILE,
    dev_profile_fields,
    dev_smtp,
    start_capture_server,
)
from worker.repository import Repository

pytestmark = pytest.mark.timeout(60)


def _read_eml(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def _profiles(engine: AsyncEngine) -> dict[str, tuple[str, int, bool]]:
    async with engine.connect() as connection:
        profiles = await Repository(connection).list_profiles()
    return {p.name: (p.host, p.port, p.is_default) for p in profiles}


async def test_capture_server_keeps_each_message_whole_with_its_envelope(tmp_path: Path) -> None:
    """Each accepted message is one complete .eml file; Bcc recipients show in X-Original-To.

    The file holds the message as sent, after a Return-Path and an X-Original-To header that
    give the envelope, and no temporary file is left behind.
    """
    folder = tmp_path / "devmail"
    server = await start_capture_server(folder, port=0)
    try:
        message = EmailMessage()
        message["From"] = "jan@example.com"
        message["To"] = "anna@example.com"
        message["Subject"] = "Wiadomość testowa"
        message.set_content("Dzień dobry!")
        await aiosmtplib.send(
            message,
            hostname=DEV_HOST,
            port=server.port,
            recipients=["anna@example.com", "ukryty@example.com"],
            timeout=5,
        )
    finally:
        await server.close()

    [path] = list(folder.iterdir())
    assert ".eml" == path.suffix
    kept = _read_eml(path)
    assert "<jan@example.com>" == kept["Return-Path"]
    assert "anna@example.com, ukryty@example.com" == kept["X-Original-To"]
    assert "Wiadomość testowa" == kept["Subject"]
    body = kept.get_body()
    assert body is not None
    assert "Dzień dobry!" == body.get_content().strip()


async def test_with_no_profile_it_creates_local_and_follows_a_new_port(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """With an empty profile table, --dev-smtp creates profile 'local' for the server's address.

    'local' is the default while it is the only profile, so a message naming no profile is
    captured too; a later start on another port points the same profile at the new port.
    """
    with capture_logs() as logs:
        async with dev_smtp(engine, data_dir=tmp_path, port=0) as first:
            assert first is not None
            first_port = first.port
            assert {DEV_PROFILE: (DEV_HOST, first_port, True)} == await _profiles(engine)
        async with dev_smtp(engine, data_dir=tmp_path, port=0) as second:
            assert second is not None
            second_port = second.port
            assert {DEV_PROFILE: (DEV_HOST, second_port, True)} == await _profiles(engine)

    started = [entry for entry in logs if entry["event"] == "dev_smtp_started"]
    assert [("created", first_port), ("updated", second_port)] == [
        (entry["profile_change"], entry["port"]) for entry in started
    ]
    assert {str((tmp_path / DEV_FOLDER).resolve())} == {entry["folder"] for entry in started}
    assert {"warning"} == {entry["log_level"] for entry in started}
    assert 2 == sum(entry["event"] == "dev_smtp_stopped" for entry in logs)


async def test_with_real_profiles_it_starts_nothing(engine: AsyncEngine, tmp_path: Path) -> None:
    """Once a real profile exists (and no 'local' one), --dev-smtp adds no profile and no server."""
    real = dev_profile_fields(25)
    real_row = {**real.as_row(), "name": "wp", "description": "", "password_encrypted": None}
    async with engine.begin() as connection:
        await Repository(connection).create_profile(real_row)

    with capture_logs() as logs:
        async with dev_smtp(engine, data_dir=tmp_path, port=0) as server:
            assert server is None

    assert ["dev_smtp_skipped"] == [entry["event"] for entry in logs]
    assert {"wp"} == set(await _profiles(engine))
    assert not (tmp_path / DEV_FOLDER).exists()


async def test_a_taken_port_leaves_the_worker_running_without_capture(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """When the port is taken (say, by a second `make run`), --dev-smtp logs why and yields no
    server instead of failing the worker; it creates no profile then."""
    with socket.socket() as taken:
        taken.bind((DEV_HOST, 0))
        taken.listen()
        with capture_logs() as logs:
            async with dev_smtp(engine, data_dir=tmp_path, port=taken.getsockname()[1]) as server:
                assert server is None

    assert ["dev_smtp_not_started"] == [entry["event"] for entry in logs]
    assert "cannot listen on 127.0.0.1:" in logs[0]["reason"]
    assert {} == await _profiles(engine)


async def test_run_dev_smtp_delivers_to_an_eml_file_then_stops_on_sigterm(
    database_url: str, cli_env: dict[str, str], workers: WorkerProcesses, probe: Probe
) -> None:
    """`mailworker run --dev-smtp` on a database with no profile delivers a message to 'local'.

    The message lands as an .eml file under <data_dir>/devmail/ (the folder the log names), its
    row is 'sent', and SIGTERM stops the worker and the server with exit code 0.
    """
    assert [] == await probe.query("SELECT name FROM mail.profile")
    worker = workers.start("dev", "--dev-smtp", "--dev-smtp-port", "0")
    started = await worker.wait_logged("dev_smtp_started", within=20)
    folder = Path(started["folder"])
    assert (Path(cli_env["MAILWORKER_DATA_DIR"]) / DEV_FOLDER).resolve() == folder

    await probe.query(
        "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
        " VALUES ('local', ARRAY['you@example.com'], 'Pierwsza wiadomość', 'Dzień dobry!')"
    )

    async def kept() -> list[Path]:
        workers.assert_running()
        return await asyncio.to_thread(lambda: sorted(folder.glob("*.eml")))

    [path] = await wait_until(kept, within=20, what="an .eml file", context=workers.report)
    message = _read_eml(path)
    assert "you@example.com" == message["To"]
    assert "Pierwsza wiadomość" == message["Subject"]
    assert "mailworker@localhost.localdomain" in message["From"]

    async def row_sent() -> bool:
        return {"sent": 1} == await probe.statuses()

    await wait_until(row_sent, within=10, what="the row is sent", context=workers.report)
    worker.send_signal(signal.SIGTERM)
    assert 0 == await worker.wait_exit(within=15)
    assert worker.logged("dev_smtp_stopped")


def test_the_first_real_profile_takes_the_default_from_local(cli_env: dict[str, str]) -> None:
    """``migrate --dev-profile`` makes 'local' (the default, as the only profile) before any
    worker; ``profiles add`` of a real profile then takes the default over, so real mail is
    never captured by mistake. A second --dev-profile changes nothing."""
    runner = CliRunner(env=cli_env)
    made = runner.invoke(main, ["migrate", "--dev-profile"])
    again = runner.invoke(main, ["migrate", "--dev-profile"])
    before = json.loads(runner.invoke(main, ["profiles", "list", "--json"]).stdout)
    real = ["biuro", "--from", "biuro@example.pl", "--host", "smtp.example.pl", "--auth", "none"]
    added = runner.invoke(main, ["profiles", "add", *real])
    after = json.loads(runner.invoke(main, ["profiles", "list", "--json"]).stdout)

    assert "development profile 'local': created" in made.stdout
    assert "development profile 'local': unchanged" in again.stdout
    assert [("local", True)] == [(p["name"], p["is_default"]) for p in before]
    assert 0 == added.exit_code, added.output
    assert {"local": False, "biuro": True} == {p["name"]: p["is_default"] for p in after}
