"""Test data for the outbox tests: a minimal PDF built in code and two SMTP profiles."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

__all__ = [
    "DEFAULT_PROFILE",
    "POLISH_BODY",
    "POLISH_SUBJECT",
    "SHOP_PROFILE",
    "add_profiles",
    "add_profiles_at",
    "attachments_of",
    "minimal_pdf",
    "pick",
    "stored_message",
]

DEFAULT_PROFILE = "biuro"
SHOP_PROFILE = "sklep"
POLISH_SUBJECT = "Wiadomość testowa 1"
POLISH_BODY = "Dzień dobry,\nw załączniku przesyłamy fakturę.\n\nZażółć gęślą jaźń."

_PDF_OBJECTS = (
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
)


def minimal_pdf() -> bytes:
    """A valid one-page (blank A4) PDF with a correct cross-reference table; no binary file."""
    document = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(_PDF_OBJECTS, start=1):
        offsets.append(len(document))
        document += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(document)
    document += b"xref\n0 %d\n0000000000 65535 f \n" % (len(_PDF_OBJECTS) + 1)
    document += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    document += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(_PDF_OBJECTS) + 1)
    document += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(document)


async def add_profiles(connection: AsyncConnection, *, with_default: bool = True) -> None:
    """Profiles ``biuro`` (the default one unless ``with_default`` is false) and ``sklep``."""
    await connection.execute(
        text(
            "INSERT INTO mail.profile (name, from_address, host, port, auth_method, is_default)"
            " VALUES (:default, 'biuro@example.pl', 'smtp.example.pl', 587, 'none', :is_default),"
            "        (:shop, 'sklep@example.pl', 'smtp.example.pl', 587, 'none', false)"
        ),
        {"default": DEFAULT_PROFILE, "shop": SHOP_PROFILE, "is_default": with_default},
    )


async def add_profiles_at(database_url: str) -> None:
    """:func:`add_profiles`, committed, for tests that have no connection of their own."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await add_profiles(connection)
    finally:
        await engine.dispose()


async def stored_message(connection: AsyncConnection, message_id: int) -> dict[str, Any]:
    """The ``mail.outbox`` row with this id, as a dict."""
    result = await connection.execute(
        text("SELECT * FROM mail.outbox WHERE id = :id"), {"id": message_id}
    )
    return dict(result.mappings().one())


async def attachments_of(
    connection: AsyncConnection, message_id: int
) -> list[tuple[str, str, bytes]]:
    """``(filename, content_type, content)`` of each attachment of a message, in insert order."""
    result = await connection.execute(
        text(
            "SELECT filename, content_type, content FROM mail.attachment"
            " WHERE outbox_id = :id ORDER BY id"
        ),
        {"id": message_id},
    )
    return [(row.filename, row.content_type, row.content) for row in result]


def pick(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    """Only these columns of a row, so a test compares what it is about."""
    return {column: row[column] for column in columns}
