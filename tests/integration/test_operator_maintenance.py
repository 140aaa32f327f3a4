"""``mailworker purge`` and ``mailworker secrets rotate`` against a database of the test's own.

Plain ``def`` tests: each command runs its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.kit.commands import cli, failed, ok
from tests.kit.database import run_sql
from tests.kit.delivery import enqueue, fast_settings, run_until_empty
from tests.kit.rows import (
    ago,
    ids,
    insert_attachment,
    insert_attempt,
    insert_message,
    insert_profile,
)
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from worker.crypto import load_cipher
from worker.errors import SecretKeyError
from worker.settings import Settings

# --- purge -----------------------------------------------------------------------------------


def _history(database_url: str) -> tuple[list[int], list[int]]:
    """Rows a 30-day purge must delete, and rows it must keep (with the reason for each)."""
    insert_profile(database_url, "biuro", is_default=True)
    old: list[int] = []
    for _ in range(5):
        message = insert_message(
            database_url, status="sent", created_at=ago(days=41), sent_at=ago(days=40)
        )
        insert_attachment(database_url, message, "faktura.pdf", b"%PDF-1.4")
        insert_attempt(
            database_url, message, outcome="sent", started_at=ago(days=40), finished_at=ago(days=40)
        )
        old.append(message)
    for _ in range(2):
        message = insert_message(database_url, status="failed", created_at=ago(days=45))
        insert_attempt(database_url, message, started_at=ago(days=44), finished_at=ago(days=44))
        old.append(message)
    old.append(insert_message(database_url, status="cancelled", created_at=ago(days=40)))
    old.append(
        insert_message(
            database_url,
            status="failed",
            status_reason="expired: not sent before expires_at",
            created_at=ago(days=60),
            expires_at=ago(days=35),
        )
    )
    retried_lately = insert_message(database_url, status="failed", created_at=ago(days=45))
    insert_attempt(database_url, retried_lately, started_at=ago(days=1), finished_at=ago(days=1))
    kept = [
        retried_lately,  # enqueued long ago, but its last attempt ended yesterday
        insert_message(database_url, created_at=ago(days=40)),  # pending: never purged
        insert_message(database_url, status="sending", created_at=ago(days=40)),
        insert_message(database_url, status="sent", created_at=ago(days=2), sent_at=ago(days=2)),
        insert_message(
            database_url,
            status="failed",
            status_reason="expired: not sent before expires_at",
            created_at=ago(days=60),
            expires_at=ago(days=10),  # finished 10 days ago
        ),
    ]
    return sorted(old), sorted(kept)


def _remaining(database_url: str) -> list[int]:
    return ids(run_sql(database_url, "SELECT id FROM mail.outbox"))


def test_purge_deletes_only_old_finished_rows_in_batches(
    cli_env: dict[str, str], database_url: str
) -> None:
    """Finished rows older than the age go, batch by batch, with their attachments and
    attempts; pending, sending and recently finished rows stay. --dry-run only counts."""
    old, kept = _history(database_url)

    dry = ok(cli_env, "purge", "--older-than", "30d", "--dry-run")
    assert dry.stdout.startswith("would delete 9 sent/failed/cancelled message(s) finished before")
    assert sorted(old + kept) == _remaining(database_url)

    result = ok(cli_env, "purge", "--older-than", "30d", "--batch-size", "4")

    assert result.stdout.startswith("deleted 9 sent/failed/cancelled message(s) finished before")
    assert result.stdout.rstrip().endswith("in 3 batch(es)")
    assert kept == _remaining(database_url)
    assert [] == run_sql(database_url, "SELECT id FROM mail.attachment")
    orphans = run_sql(
        database_url,
        "SELECT outbox_id FROM mail.attempt WHERE outbox_id <> ALL(:kept)",
        kept=kept,
    )
    assert [] == orphans
    assert '"event": "outbox_purged"' in result.stderr


def test_purge_takes_only_the_statuses_given(cli_env: dict[str, str], database_url: str) -> None:
    """--status sent leaves old failed and cancelled rows; unfinished statuses are refused."""
    old, kept = _history(database_url)

    ok(cli_env, "purge", "--older-than", "30d", "--status", "sent")

    statuses = {row.status for row in run_sql(database_url, "SELECT status FROM mail.outbox")}
    assert 9 - 5 + len(kept) == len(_remaining(database_url))
    assert {"failed", "cancelled", "pending", "sending", "sent"} == statuses
    for wrong in ("pending", "sent,sending"):
        refused = failed(cli_env, "purge", "--older-than", "30d", "--status", wrong)
        assert "only finished messages are purged" in refused.output
    for age in ("30", "0d", "soon"):
        assert 2 == cli(cli_env, "purge", "--older-than", age).exit_code
    assert len(old) - 5 + len(kept) == len(_remaining(database_url))


def test_purge_skips_a_held_row_instead_of_waiting(
    cli_env: dict[str, str], database_url: str
) -> None:
    """A row locked by another transaction is left for later; the purge does not wait for it."""
    old, kept = _history(database_url)
    held, release = threading.Event(), threading.Event()

    async def hold_row() -> None:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("SELECT id FROM mail.outbox WHERE id = :id FOR UPDATE"), {"id": old[0]}
                )
                held.set()
                await asyncio.to_thread(release.wait, 30)
        finally:
            await engine.dispose()

    holder = threading.Thread(target=lambda: asyncio.run(hold_row()))
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        result = ok(cli_env, "purge", "--older-than", "30d", "--batch-size", "2")
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join(30)

    assert elapsed < 10
    assert "deleted 8 " in result.stdout
    assert sorted([old[0], *kept]) == _remaining(database_url)


def test_purge_shows_progress_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str], database_url: str
) -> None:
    """A person at a terminal sees a progress bar on stderr; a script gets clean output."""
    _history(database_url)
    quiet = ok(cli_env, "purge", "--older-than", "30d", "--status", "sent")
    assert "deleting finished messages" not in quiet.output

    monkeypatch.setattr("worker.cli.output.on_terminal", lambda: True)
    shown = ok(cli_env, "purge", "--older-than", "30d")

    assert "deleting finished messages" in shown.stderr
    assert "deleting finished messages" not in shown.stdout


# --- secrets rotate --------------------------------------------------------------------------


def _token(database_url: str, name: str) -> bytes:
    [(token,)] = run_sql(
        database_url, "SELECT password_encrypted FROM mail.profile WHERE name = :n", n=name
    )
    return bytes(token)


def test_rotate_moves_passwords_to_the_new_key(
    cli_env: dict[str, str],
    settings: Settings,
    database_url: str,
    secret_key: str,
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """Profiles saved under key A, rotated with "B,A", work with key B alone: the password
    decrypts and a real SMTP login succeeds; a profile's pause is kept."""
    key_a, key_b = secret_key, Fernet.generate_key().decode()
    server = smtp_server_factory(tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD})
    ok(
        cli_env,
        *["profiles", "add", "test", "--from", "jankowalski@wp.pl", "--host", server.hostname],
        *["--port", str(server.port), "--encryption", "ssl", "--login", SMTP_LOGIN],
        *["--ca-bundle", str(server.cert_bundle), "--password-stdin"],
        input=SMTP_PASSWORD,
    )
    ok(
        cli_env,
        *["profiles", "add", "onet", "--preset", "onet", "--from", "annanowak@op.pl"],
        "--password-stdin",
        input="Pierwiosnek479%",
    )
    run_sql(
        database_url,
        "UPDATE mail.profile SET paused_until = now() + interval '1 hour',"
        " pause_reason = '535 5.7.8', pause_count = 1 WHERE name = 'onet'",
    )

    result = ok(cli_env, "secrets", "rotate", MAILWORKER_SECRET_KEY=f"{key_b},{key_a}")

    assert "re-encrypted 2 stored password(s) under the newest key (1 of 2 configured)" in (
        result.stdout
    )
    only_b = load_cipher(settings.model_copy(update={"secret_key": SecretStr(key_b)}))
    only_a = load_cipher(settings.model_copy(update={"secret_key": SecretStr(key_a)}))
    assert SMTP_PASSWORD == only_b.decrypt(_token(database_url, "test"), profile="test")
    assert "Pierwiosnek479%" == only_b.decrypt(_token(database_url, "onet"), profile="onet")
    with pytest.raises(SecretKeyError):
        only_a.decrypt(_token(database_url, "test"), profile="test")
    [(paused,)] = run_sql(
        database_url, "SELECT paused_until > now() FROM mail.profile WHERE name = 'onet'"
    )
    assert paused is True

    with_b = fast_settings(settings.model_copy(update={"secret_key": SecretStr(key_b)}))
    asyncio.run(enqueue(with_b))
    asyncio.run(run_until_empty(with_b, cipher=only_b))
    assert 1 == len(server.messages)
    assert SMTP_LOGIN == server.messages[0].login


def test_rotate_moves_oauth_secrets_and_tokens_to_the_new_key(
    cli_env: dict[str, str], settings: Settings, database_url: str, secret_key: str
) -> None:
    """An app's client secret and a grant's refresh and access tokens move with the
    passwords: afterwards the new key alone opens each of them, the old one none."""
    key_a, key_b = secret_key, Fernet.generate_key().decode()
    ok(
        cli_env,
        *["profiles", "add", "biuro", "--preset", "office365", "--from", "anna@contoso.com"],
        *["--auth", "oauth2", "--oauth-client-id", "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11"],
        *["--oauth-tenant", "contoso.onmicrosoft.com", "--oauth-client-secret-env", "APP_SECRET"],
        APP_SECRET="Sekret~aplikacji~Entra~42",
    )
    only_a = load_cipher(settings)
    run_sql(
        database_url,
        "INSERT INTO mail.oauth_grant (profile_id, refresh_token_encrypted,"
        " access_token_encrypted, access_expires_at)"
        " SELECT id, :refresh, :access, now() + interval '1 hour' FROM mail.profile",
        refresh=only_a.encrypt("odswiezajacy-token-0001"),
        access=only_a.encrypt("dostepowy-token-0001"),
    )

    result = ok(cli_env, "secrets", "rotate", MAILWORKER_SECRET_KEY=f"{key_b},{key_a}")

    assert "re-encrypted 3 stored OAuth secret(s) and token(s)" in result.stdout
    [(credential, refresh, access)] = run_sql(
        database_url,
        "SELECT p.oauth_credential_encrypted, g.refresh_token_encrypted,"
        " g.access_token_encrypted FROM mail.profile p JOIN mail.oauth_grant g"
        " ON g.profile_id = p.id",
    )
    only_b = load_cipher(settings.model_copy(update={"secret_key": SecretStr(key_b)}))
    opened = [only_b.decrypt(bytes(t), profile="biuro") for t in (credential, refresh, access)]
    assert ["Sekret~aplikacji~Entra~42", "odswiezajacy-token-0001", "dostepowy-token-0001"] == (
        opened
    )
    for token in (credential, refresh, access):
        with pytest.raises(SecretKeyError):
            only_a.decrypt(bytes(token), profile="biuro")


def test_rotate_names_a_password_no_key_opens_and_keeps_it(
    cli_env: dict[str, str], database_url: str, secret_key: str
) -> None:
    """A token under an unknown key is reported by profile name and left byte for byte; the
    other passwords are re-encrypted all the same (exit 1)."""
    key_a, key_b, lost_key = secret_key, Fernet.generate_key(), Fernet.generate_key()
    ok(
        cli_env,
        *["profiles", "add", "wp", "--preset", "wp", "--from", "jankowalski@wp.pl"],
        "--password-stdin",
        input="Konwalia369!",
    )
    orphan = Fernet(lost_key).encrypt(b"Stare-Haslo-1")
    insert_profile(
        database_url,
        "stary",
        auth_method="login",
        login="stary",
        encryption="ssl",
        port=465,
        password_encrypted=orphan,
    )

    result = failed(cli_env, "secrets", "rotate", MAILWORKER_SECRET_KEY=f"{key_b.decode()},{key_a}")

    assert "re-encrypted 1 stored password(s)" in result.stdout
    assert "profile 'stary': its stored password cannot be decrypted" in result.stderr
    assert "1 password(s) could not be re-encrypted" in result.stderr
    assert orphan == _token(database_url, "stary")
    assert b"Stare-Haslo-1" == Fernet(lost_key).decrypt(_token(database_url, "stary"))
    assert b"Konwalia369!" == Fernet(key_b).decrypt(_token(database_url, "wp"))
