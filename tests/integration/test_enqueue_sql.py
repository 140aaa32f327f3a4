"""Services enqueue with plain SQL; the database refuses every row its constraints can catch."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.kit.outbox_samples import (
    POLISH_BODY,
    POLISH_SUBJECT,
    SHOP_PROFILE,
    add_profiles,
    attachments_of,
    minimal_pdf,
    pick,
    stored_message,
)

POLISH_MESSAGE_WITH_PDF = text(
    """
    WITH m AS (
        INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)
        VALUES (:profile, ARRAY['jan.kowalski@example.pl'], :subject, :body)
        RETURNING id
    )
    INSERT INTO mail.attachment (outbox_id, filename, content_type, content)
    SELECT id, 'faktura.pdf', 'application/pdf', :pdf FROM m
    RETURNING outbox_id
    """
)


@pytest.fixture
async def with_profiles(connection: AsyncConnection) -> AsyncConnection:
    await add_profiles(connection)
    return connection


async def test_polish_message_with_pdf_in_one_statement(with_profiles: AsyncConnection) -> None:
    """One INSERT with a CTE stores the message and its PDF; defaults make it pending."""
    connection = with_profiles
    pdf = minimal_pdf()
    params = {"profile": SHOP_PROFILE, "subject": POLISH_SUBJECT, "body": POLISH_BODY, "pdf": pdf}
    message_id = (await connection.execute(POLISH_MESSAGE_WITH_PDF, params)).scalar_one()

    row = await stored_message(connection, message_id)
    expected = {
        "profile": SHOP_PROFILE,
        "to_addrs": ["jan.kowalski@example.pl"],
        "cc_addrs": [],
        "bcc_addrs": [],
        "subject": POLISH_SUBJECT,
        "body_text": POLISH_BODY,
        "headers": {},
        "status": "pending",
        "kind": "notification",
        "priority": 0,
        "attempts": 0,
    }
    assert expected == pick(row, *expected)
    assert [("faktura.pdf", "application/pdf", pdf)] == await attachments_of(connection, message_id)


async def _insert(connection: AsyncConnection, statement: str) -> None:
    await connection.execute(text(statement))


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        pytest.param(
            "INSERT INTO mail.outbox (to_addrs, cc_addrs, bcc_addrs, subject)"
            " VALUES ('{}', '{}', '{}', 'Test')",
            "ck_outbox_has_recipient",
            id="no recipients",
        ),
        pytest.param(
            "INSERT INTO mail.outbox (to_addrs, subject) VALUES (ARRAY['a@example.pl', NULL], 'T')",
            "ck_outbox_no_null_recipient",
            id="NULL recipient",
        ),
        pytest.param(
            "INSERT INTO mail.outbox (to_addrs, subject, status)"
            " VALUES ('{a@example.pl}', 'T', 'queued')",
            "ck_outbox_status",
            id="unknown status",
        ),
        pytest.param(
            "INSERT INTO mail.outbox (to_addrs, subject, kind)"
            " VALUES ('{a@example.pl}', 'T', 'news')",
            "ck_outbox_kind",
            id="unknown kind",
        ),
        pytest.param(
            "INSERT INTO mail.outbox (to_addrs, subject, priority)"
            " VALUES ('{a@example.pl}', 'T', -1)",
            "ck_outbox_priority_not_negative",
            id="negative priority",
        ),
        pytest.param(
            "INSERT INTO mail.outbox (to_addrs, subject, headers)"
            " VALUES ('{a@example.pl}', 'T', '[]')",
            "ck_outbox_headers_object",
            id="headers not an object",
        ),
        pytest.param(
            "INSERT INTO mail.outbox (to_addrs, subject, idempotency_key)"
            " VALUES ('{a@example.pl}', 'T', '')",
            "ck_outbox_idempotency_key_not_empty",
            id="empty idempotency key",
        ),
        pytest.param(
            "WITH m AS (INSERT INTO mail.outbox (to_addrs, subject) VALUES ('{a@example.pl}', 'T')"
            " RETURNING id) INSERT INTO mail.attachment (outbox_id, filename, content)"
            " SELECT id, '', 'x'::bytea FROM m",
            "ck_attachment_filename_not_empty",
            id="empty attachment filename",
        ),
        pytest.param(
            "WITH m AS (INSERT INTO mail.outbox (to_addrs, subject) VALUES ('{a@example.pl}', 'T')"
            " RETURNING id)"
            " INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
            " SELECT id, 'a.pdf', 'pdf', 'x'::bytea FROM m",
            "ck_attachment_content_type_shape",
            id="content type not type/subtype",
        ),
        pytest.param(
            "INSERT INTO mail.attachment (outbox_id, filename, content) VALUES (999, 'a', 'x')",
            "fk_attachment_outbox_id_outbox",
            id="attachment of no message",
        ),
    ],
)
async def test_the_database_refuses_bad_rows(
    with_profiles: AsyncConnection, statement: str, constraint: str
) -> None:
    """Each bad row is refused by the named constraint, so no caller can store it."""
    with pytest.raises(DBAPIError) as raised:
        await _insert(with_profiles, statement)
    assert constraint == _violated_constraint(raised.value)


ALL_GIVEN = text(
    "INSERT INTO mail.outbox (to_addrs, subject, body_text, headers, kind)"
    " VALUES (:to_addrs, :subject, :body_text, CAST(:headers AS jsonb), :kind)"
)


@pytest.mark.parametrize("column", ["to_addrs", "subject", "body_text", "headers", "kind"])
async def test_explicit_null_is_refused(with_profiles: AsyncConnection, column: str) -> None:
    """Columns with a default still refuse an explicit NULL (e.g. a NULL subject)."""
    values: dict[str, Any] = {
        "to_addrs": ["jan@example.pl"],
        "subject": "Test",
        "body_text": "",
        "headers": "{}",
        "kind": "notification",
    }
    values[column] = None
    with pytest.raises(DBAPIError) as raised:
        await with_profiles.execute(ALL_GIVEN, values)
    cause = raised.value.orig.__cause__  # asyncpg's NotNullViolationError
    expected = ("23502", column)
    assert expected == (cause.sqlstate, cause.column_name)  # type: ignore[union-attr]


IDEMPOTENT_INSERT = text(
    """
    WITH m AS (
        INSERT INTO mail.outbox (to_addrs, subject, idempotency_key)
        VALUES (ARRAY['jan@example.pl'], :subject, 'order-1042-shipped')
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
    )
    INSERT INTO mail.attachment (outbox_id, filename, content)
    SELECT id, 'list.txt', 'x'::bytea FROM m
    RETURNING outbox_id
    """
)


async def test_a_repeated_idempotency_key_inserts_nothing(with_profiles: AsyncConnection) -> None:
    """With ON CONFLICT (idempotency_key) DO NOTHING a repeat adds no message and no attachment."""
    connection = with_profiles
    first = (await connection.execute(IDEMPOTENT_INSERT, {"subject": "first"})).all()
    second = (await connection.execute(IDEMPOTENT_INSERT, {"subject": "second"})).all()
    counts = await _counts(connection)
    subject = await connection.scalar(text("SELECT subject FROM mail.outbox"))
    expected = (1, 0, (1, 1), "first")
    assert expected == (len(first), len(second), counts, subject)


async def test_a_repeated_idempotency_key_without_on_conflict_fails(
    with_profiles: AsyncConnection,
) -> None:
    """Without ON CONFLICT the repeat is an error, so a caller never silently sends twice."""
    statement = (
        "INSERT INTO mail.outbox (to_addrs, subject, idempotency_key)"
        " VALUES ('{a@example.pl}', 'T', 'k')"
    )
    await _insert(with_profiles, statement)
    with pytest.raises(DBAPIError) as raised:
        await _insert(with_profiles, statement)
    expected = "uq_outbox_idempotency_key"
    assert expected == _violated_constraint(raised.value)


async def test_null_idempotency_keys_never_conflict(with_profiles: AsyncConnection) -> None:
    """Messages without a key are all stored, however many there are."""
    statement = "INSERT INTO mail.outbox (to_addrs, subject) VALUES ('{a@example.pl}', 'T')"
    for _ in range(3):
        await _insert(with_profiles, statement)
    expected = (3, 0)
    assert expected == await _counts(with_profiles)


async def test_deleting_a_message_deletes_its_attachments(with_profiles: AsyncConnection) -> None:
    """Attachments belong to their message and go with it."""
    connection = with_profiles
    params = {"profile": None, "subject": POLISH_SUBJECT, "body": "", "pdf": minimal_pdf()}
    await connection.execute(POLISH_MESSAGE_WITH_PDF, params)
    await _insert(connection, "DELETE FROM mail.outbox")
    expected = (0, 0)
    assert expected == await _counts(connection)


async def _counts(connection: AsyncConnection) -> tuple[int, int]:
    messages = await connection.scalar(text("SELECT count(*) FROM mail.outbox"))
    attachments = await connection.scalar(text("SELECT count(*) FROM mail.attachment"))
    return int(messages or 0), int(attachments or 0)


def _violated_constraint(error: DBAPIError) -> str:
    # SQLAlchemy wraps asyncpg's exception, which names the constraint.
    return str(error.orig.__cause__.constraint_name)  # type: ignore[union-attr]
