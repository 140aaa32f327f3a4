"""``worker.outbox.enqueue`` joins the caller's transaction and stores messages exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from tests.kit.outbox_samples import (
    DEFAULT_PROFILE,
    POLISH_BODY,
    POLISH_SUBJECT,
    SHOP_PROFILE,
    add_profiles,
    attachments_of,
    minimal_pdf,
    pick,
    stored_message,
)
from worker.errors import InvalidMessage, ProfileNotFound
from worker.migrate import upgrade_async
from worker.outbox import (
    Attachment,
    Enqueued,
    OutboxMessage,
    enqueue,
    enqueue_and_commit,
    enqueue_many,
)

COUNT_MESSAGES = text("SELECT count(*) FROM mail.outbox")


@pytest.fixture
async def profiles(engine: AsyncEngine) -> None:
    """``biuro`` (the default) and ``sklep``, committed."""
    async with engine.begin() as connection:
        await add_profiles(connection)


@pytest.fixture
def invoice(tmp_path: Path) -> Path:
    """A PDF file on disk, as a service would attach it."""
    path = tmp_path / "faktura.pdf"
    path.write_bytes(minimal_pdf())
    return path


async def _message_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(COUNT_MESSAGES) or 0)


@pytest.mark.usefixtures("profiles")
async def test_polish_message_with_a_pdf_from_a_file(engine: AsyncEngine, invoice: Path) -> None:
    """Every field given is stored as given; the PDF is stored byte for byte as application/pdf."""
    not_before = datetime(2026, 12, 1, 8, tzinfo=UTC)
    async with engine.begin() as connection:
        result = await enqueue(
            connection,
            to="jan.kowalski@example.pl",
            cc=["anna.nowak@example.pl"],
            bcc=("archiwum@example.pl",),
            subject=POLISH_SUBJECT,
            body_text=POLISH_BODY,
            body_html="<p>Dzień dobry</p>",
            profile=SHOP_PROFILE,
            attachments=[Attachment.from_path(invoice)],
            headers={"Reply-To": "Dział obsługi <obsluga@example.pl>"},
            priority=7,
            not_before=not_before,
            expires_at=not_before + timedelta(days=2),
            idempotency_key="invoice-2026-0001",
        )
    async with engine.connect() as connection:
        row = await stored_message(connection, result.id)
        attachments = await attachments_of(connection, result.id)
    expected = {
        "profile": SHOP_PROFILE,
        "to_addrs": ["jan.kowalski@example.pl"],
        "cc_addrs": ["anna.nowak@example.pl"],
        "bcc_addrs": ["archiwum@example.pl"],
        "subject": POLISH_SUBJECT,
        "body_text": POLISH_BODY,
        "body_html": "<p>Dzień dobry</p>",
        "headers": {"Reply-To": "Dział obsługi <obsluga@example.pl>"},
        "priority": 7,
        "not_before": not_before,
        "expires_at": not_before + timedelta(days=2),
        "idempotency_key": "invoice-2026-0001",
        "kind": "notification",
        "status": "pending",
    }
    assert expected == pick(row, *expected)
    assert [("faktura.pdf", "application/pdf", minimal_pdf())] == attachments
    assert Enqueued(result.id, created=True) == result


@pytest.mark.usefixtures("profiles")
async def test_attachments_are_stored_byte_exact(connection: AsyncConnection) -> None:
    """Binary content (every byte value, NUL included) and given content types survive as is."""
    every_byte = bytes(range(256)) * 4
    files = [
        Attachment("dane.bin", every_byte),
        Attachment("pusty.txt", b"", "text/plain"),
        Attachment("zażółć.csv", "a;b\r\nż;ł\r\n".encode()),
    ]
    result = await enqueue(connection, to="jan@example.pl", subject="Pliki", attachments=files)
    expected = [
        ("dane.bin", "application/octet-stream", every_byte),
        ("pusty.txt", "text/plain", b""),
        ("zażółć.csv", "text/csv", "a;b\r\nż;ł\r\n".encode()),
    ]
    assert expected == await attachments_of(connection, result.id)


@pytest.mark.usefixtures("profiles")
async def test_a_repeated_idempotency_key_returns_the_first_message(
    connection: AsyncConnection, invoice: Path
) -> None:
    """The repeat inserts nothing (no row, no attachment) and returns the first id, not created."""
    first = await enqueue(
        connection,
        to="jan@example.pl",
        subject="Pierwsza",
        attachments=[Attachment.from_path(invoice)],
        idempotency_key="order-1042-shipped",
    )
    again = await enqueue(
        connection,
        to="inny@example.pl",
        subject="Druga",
        attachments=[Attachment.from_path(invoice)],
        idempotency_key="order-1042-shipped",
    )
    counts = (
        await connection.scalar(COUNT_MESSAGES),
        await connection.scalar(text("SELECT count(*) FROM mail.attachment")),
    )
    row = await stored_message(connection, first.id)
    assert (Enqueued(first.id, True), Enqueued(first.id, False)) == (first, again)
    expected = ((1, 1), "Pierwsza")
    assert expected == (counts, row["subject"])


@pytest.mark.usefixtures("profiles")
async def test_a_caller_rollback_leaves_no_message(engine: AsyncEngine, invoice: Path) -> None:
    """enqueue joins the caller's connection transaction: rolled back, the message is gone."""
    async with engine.connect() as connection:
        await enqueue(
            connection,
            to="jan@example.pl",
            subject=POLISH_SUBJECT,
            attachments=[Attachment.from_path(invoice)],
        )
        inside = await connection.scalar(COUNT_MESSAGES)
        await connection.rollback()
    expected = (1, 0)
    assert expected == (inside, await _message_count(engine))


@pytest.mark.usefixtures("profiles")
async def test_enqueue_never_commits_on_its_own(engine: AsyncEngine) -> None:
    """Until the caller commits, other connections do not see the message."""
    async with engine.connect() as connection:
        await enqueue(connection, to="jan@example.pl", subject="Test")
        before_commit = await _message_count(engine)
        await connection.commit()
    expected = (0, 1)
    assert expected == (before_commit, await _message_count(engine))


@pytest.mark.usefixtures("profiles")
async def test_a_session_rollback_leaves_no_message(engine: AsyncEngine) -> None:
    """With an AsyncSession, enqueue joins the session's transaction and its rollback."""
    async with AsyncSession(engine) as session:
        await enqueue(session, to="jan@example.pl", subject=POLISH_SUBJECT)
        inside = await session.scalar(COUNT_MESSAGES)
        await session.rollback()
    expected = (1, 0)
    assert expected == (inside, await _message_count(engine))


@pytest.mark.usefixtures("profiles")
async def test_a_session_commit_keeps_the_message_with_the_callers_data(
    engine: AsyncEngine,
) -> None:
    """The caller's own write and the message commit together in one session transaction."""
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(text("CREATE TABLE orders (id int PRIMARY KEY)"))
        await session.execute(text("INSERT INTO orders VALUES (1042)"))
        result = await enqueue(session, to="jan@example.pl", subject="Zamówienie 1042")
    async with engine.connect() as connection:
        orders = await connection.scalar(text("SELECT count(*) FROM orders"))
        row = await stored_message(connection, result.id)
    expected = (1, "Zamówienie 1042")
    assert expected == (orders, row["subject"])


@pytest.mark.usefixtures("profiles")
async def test_enqueue_and_commit_uses_its_own_transaction(engine: AsyncEngine) -> None:
    """The own-transaction variant has committed when it returns."""
    result = await enqueue_and_commit(engine, to="jan@example.pl", subject="Test", kind="test")
    async with engine.connect() as connection:
        row = await stored_message(connection, result.id)
    expected = ("test", True)
    assert expected == (row["kind"], result.created)


@pytest.mark.usefixtures("profiles")
async def test_invalid_message_is_refused_before_anything_is_stored(engine: AsyncEngine) -> None:
    """InvalidMessage lists the problems; nothing reaches the table."""
    with pytest.raises(InvalidMessage) as raised:
        await enqueue_and_commit(engine, to=[], subject="a\r\nBcc: x@example.pl", priority=-1)
    expected = [
        "no recipients: give at least one address in to, cc or bcc",
        "subject contains a line break or NUL character",
        "priority must be a whole number from 0 to 32767, not -1",
    ]
    assert (expected, 0) == (raised.value.problems, await _message_count(engine))


@pytest.mark.usefixtures("profiles")
async def test_max_bytes_limits_the_message_size(connection: AsyncConnection) -> None:
    """The size limit comes from the caller (e.g. Settings.max_message_bytes)."""
    with pytest.raises(InvalidMessage) as raised:
        await enqueue(
            connection,
            to="jan@example.pl",
            subject="Duży",
            attachments=[Attachment("a.bin", b"x" * 11)],
            max_bytes=10,
        )
    expected = ["message is 11 bytes (bodies and attachments), above the 10 limit"]
    assert expected == raised.value.problems


@pytest.mark.usefixtures("profiles")
async def test_an_unknown_profile_is_refused(connection: AsyncConnection) -> None:
    """A profile name with no such profile raises ProfileNotFound naming it."""
    with pytest.raises(ProfileNotFound) as raised:
        await enqueue(connection, to="jan@example.pl", subject="T", profile="nieznany")
    expected = "there is no profile with the account name 'nieznany'"
    assert expected == str(raised.value)


async def test_no_default_profile_is_refused(connection: AsyncConnection) -> None:
    """Without a profile name a default profile must exist."""
    await add_profiles(connection, with_default=False)
    with pytest.raises(ProfileNotFound) as raised:
        await enqueue(connection, to="jan@example.pl", subject="T")
    expected = (
        "no profile is marked as the default one: name a profile for the message"
        " or mark one as the default"
    )
    assert expected == str(raised.value)


@pytest.mark.usefixtures("profiles")
async def test_the_default_profile_is_used_when_none_is_named(connection: AsyncConnection) -> None:
    """``profile=None`` is accepted when a default exists and binds the row to it."""
    result = await enqueue(connection, to="jan@example.pl", subject="T")
    row = await stored_message(connection, result.id)
    # The outbox insert trigger writes the default profile of the moment into the row.
    expected = DEFAULT_PROFILE
    assert expected == row["profile"]


async def test_another_schema_through_schema_translate_map(empty_database_url: str) -> None:
    """A deployment with another schema is reached by translating ``mail`` on the engine."""
    await upgrade_async(empty_database_url, "notifications")
    engine = create_async_engine(
        empty_database_url,
        execution_options={"schema_translate_map": {"mail": "notifications"}},
    )
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO notifications.profile (name, from_address, host, port,"
                    " auth_method, is_default) VALUES ('biuro', 'b@example.pl', 'smtp.example.pl',"
                    " 587, 'none', true)"
                )
            )
        result = await enqueue_and_commit(engine, to="jan@example.pl", subject=POLISH_SUBJECT)
        async with engine.connect() as connection:
            subject = await connection.scalar(
                text("SELECT subject FROM notifications.outbox WHERE id = :id"), {"id": result.id}
            )
    finally:
        await engine.dispose()
    expected = POLISH_SUBJECT
    assert expected == subject


@pytest.mark.usefixtures("profiles")
async def test_enqueue_many_stores_a_batch_in_the_callers_transaction(
    engine: AsyncEngine, invoice: Path
) -> None:
    """Three messages, two profiles, one with a PDF and one a repeated key: stored in order."""
    batch = [
        OutboxMessage(to=("jan@example.pl",), subject="Faktura 1", profile=SHOP_PROFILE),
        OutboxMessage(
            to=("anna@example.pl",),
            subject=POLISH_SUBJECT,
            attachments=(Attachment.from_path(invoice),),
            idempotency_key="faktura-2",
        ),
        OutboxMessage(to=("ewa@example.pl",), subject="Powtórka", idempotency_key="faktura-2"),
    ]
    async with engine.connect() as connection:
        first, second, repeated = await enqueue_many(connection, batch)
        await connection.commit()
        rows = [await stored_message(connection, item.id) for item in (first, second)]
        files = await attachments_of(connection, second.id)

    assert (True, True, Enqueued(second.id, False)) == (first.created, second.created, repeated)
    assert [(SHOP_PROFILE, "Faktura 1"), (DEFAULT_PROFILE, POLISH_SUBJECT)] == [
        (row["profile"], row["subject"]) for row in rows
    ]
    assert ["faktura.pdf"] == [name for name, _, _ in files]
    assert 2 == await _message_count(engine)


@pytest.mark.usefixtures("profiles")
async def test_enqueue_many_refuses_the_whole_batch_naming_each_bad_message(
    engine: AsyncEngine,
) -> None:
    """One good and two bad messages: nothing is stored, each problem names its message."""
    batch = [
        OutboxMessage(to=("jan@example.pl",), subject="Dobra"),
        OutboxMessage(to=(), subject="Bez adresata"),
        OutboxMessage(to=("ewa@example.pl",), subject="Zły\nnagłówek"),
    ]
    async with engine.connect() as connection:
        with pytest.raises(InvalidMessage) as raised:
            await enqueue_many(connection, batch)
        await connection.commit()

    expected = [
        "message 2: no recipients: give at least one address in to, cc or bcc",
        "message 3: subject contains a line break or NUL character",
    ]
    assert (expected, 0) == (raised.value.problems, await _message_count(engine))


@pytest.mark.usefixtures("profiles")
async def test_enqueue_many_refuses_a_batch_with_an_unknown_profile(
    connection: AsyncConnection,
) -> None:
    """A profile that does not exist stops the batch before any insert."""
    batch = [
        OutboxMessage(to=("jan@example.pl",), subject="A"),
        OutboxMessage(to=("jan@example.pl",), subject="B", profile="nieznany"),
    ]
    with pytest.raises(ProfileNotFound):
        await enqueue_many(connection, batch)
    assert 0 == await connection.scalar(COUNT_MESSAGES)
