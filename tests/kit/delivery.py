"""Helpers for delivery tests: profiles pointing at test servers, enqueue, run, read back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD
from tests.kit.smtp_server import SmtpTestServer
from worker.crypto import PasswordCipher, load_cipher
from worker.db import asyncpg_dsn
from worker.models import attempt, outbox
from worker.repository import Repository
from worker.settings import Settings
from worker.worker import Worker

__all__ = [
    "FAST",
    "add_profile",
    "attempts_of",
    "enqueue",
    "fast_settings",
    "row",
    "run_until_empty",
]

# Retries and polls in milliseconds, so tests finish quickly without sleeping.
FAST = {
    "poll_interval": 0.2,
    "housekeeping_interval": 0.5,
    "retry_base": 0.05,
    "retry_factor": 1.0,
    "retry_cap": 0.1,
    "lease_seconds": 30.0,
    "shutdown_grace": 5.0,
}


def fast_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={**FAST, **overrides})


async def add_profile(
    settings: Settings,
    server: SmtpTestServer,
    *,
    name: str = "test",
    encryption: str,
    login: str | None = SMTP_LOGIN,
    password: str | None = SMTP_PASSWORD,
    **fields: Any,
) -> None:
    """A profile that sends through ``server`` and trusts the test CA."""
    cipher = load_cipher(settings)
    values: dict[str, Any] = {
        "name": name,
        "from_address": "jankowalski@wp.pl",
        "display_name": "Comarch DMS - powiadomienia",
        "reply_to": "jankowalski@wp.pl",
        "host": server.hostname,
        "port": server.port,
        "encryption": encryption,
        "auth_method": "login" if login else "none",
        "login": login,
        "password_encrypted": cipher.encrypt(password) if password else None,
        "ca_bundle": str(server.cert_bundle) if server.cert_bundle else None,
        "timeout_seconds": 5,
        "is_default": name == "test",
        **fields,
    }
    engine = _engine(settings)
    try:
        async with engine.begin() as connection:
            await Repository(connection).create_profile(values)
    finally:
        await engine.dispose()


async def enqueue(settings: Settings, count: int = 1, **values: Any) -> list[int]:
    """Insert messages with plain SQL, as a producer service would."""
    columns = {
        "profile": "test",
        "to_addrs": ["odbiorca@example.com"],
        "subject": "Wiadomość testowa",
        "body_text": "Treść wiadomości.",
        **values,
    }
    engine = _engine(settings)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(
                outbox.insert().returning(outbox.c.id), [columns] * count
            )
            return [id_ for (id_,) in result]
    finally:
        await engine.dispose()


async def row(settings: Settings, message_id: int) -> Mapping[str, Any]:
    engine = _engine(settings)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(select(outbox).where(outbox.c.id == message_id))
            return result.mappings().one()
    finally:
        await engine.dispose()


async def attempts_of(settings: Settings, message_id: int) -> list[Mapping[str, Any]]:
    engine = _engine(settings)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                select(attempt).where(attempt.c.outbox_id == message_id).order_by(attempt.c.id)
            )
            return list(result.mappings())
    finally:
        await engine.dispose()


async def run_until_empty(
    settings: Settings, *, cipher: PasswordCipher | None = None, limit: float = 60
) -> None:
    """Run a worker in this process until nothing is due, as ``mailworker run --until-empty``."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    engine = _engine(settings)
    worker = Worker(
        engine=engine,
        listen_dsn=asyncpg_dsn(url),
        settings=settings,
        cipher=cipher or load_cipher(settings),
        until_empty=True,
    )
    try:
        await asyncio.wait_for(worker.run(), timeout=limit)
    finally:
        await engine.dispose()


def _engine(settings: Settings) -> AsyncEngine:
    assert settings.database_url is not None
    return create_async_engine(settings.database_url.get_secret_value())
