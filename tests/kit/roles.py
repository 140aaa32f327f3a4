"""The database roles of docs/security.md, made from its SQL under names of one test's own.

Roles are shared by every database of a server, and other test runs may use the same one, so
each test renames the page's roles with a suffix of its own and drops them afterwards. The
``roles`` fixture (tests/kit/fixtures.py) runs the page's set-up as written.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

__all__ = ["INSERT_WITH_FILE", "SETUP_BLOCKS", "Roles", "documented_sql", "drop_roles"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
PAGE_ROLES = ("mail_producer", "mail_worker", "shop_app", "mailworker_app")
ROLES = (*PAGE_ROLES, "crm_app")  # crm_app: a second producer, made by the test
_SQL_BLOCK = re.compile(
    r"^<!-- doc-test: ([^>]*?) -->\n```sql\n(.*?)^```$", re.MULTILINE | re.DOTALL
)
# What an administrator runs to set the roles up, in page order; the page's other blocks (a
# profile grant, the upgrade from 0004) have tests of their own.
SETUP_BLOCKS = ("roles", "producer grants", "producer login", "worker grants")


class Roles:
    """The page's roles under this test's names, and connections that log in as them."""

    def __init__(self, database_url: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.names = {role: f"{role}_{suffix}" for role in ROLES}
        self.dsn = make_url(database_url).set(drivername="postgresql")
        self._connections: list[asyncpg.Connection] = []

    def rename(self, sql: str) -> str:
        return re.sub(r"\b(" + "|".join(ROLES) + r")\b", lambda m: self.names[m[1]], sql)

    def url(self, role: str) -> str:
        """An SQLAlchemy URL that logs in as ``role``."""
        url = self.dsn.set(drivername="postgresql+asyncpg", username=self.names[role])
        return url.render_as_string(hide_password=False)

    async def connect(self, role: str | None = None) -> asyncpg.Connection:
        url = self.dsn if role is None else self.dsn.set(username=self.names[role])
        connection = await asyncpg.connect(url.render_as_string(hide_password=False))
        self._connections.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()


def documented_sql() -> dict[str, str]:
    """The page's SQL blocks by the name in their doc-test comment, in page order."""
    return dict(_SQL_BLOCK.findall(DOC.read_text(encoding="utf-8")))


async def drop_roles(roles: Roles) -> None:
    """Drop whichever of the test's roles exist, members before their groups."""
    connection = await roles.connect()
    try:
        for name in reversed(roles.names.values()):
            if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
                await connection.execute(f"DROP OWNED BY {name}")
                await connection.execute(f"DROP ROLE {name}")
    finally:
        await connection.close()


# A producer's insert of a message with a PDF, as docs/outbox.md shows it; $1 subject, $2 file.
INSERT_WITH_FILE = """
    WITH m AS (
        INSERT INTO mail.outbox (to_addrs, subject, body_text)
        VALUES (ARRAY['jan.kowalski@example.pl'], $1, 'Dzień dobry, w załączniku plik PDF.')
        RETURNING id
    )
    INSERT INTO mail.attachment (outbox_id, filename, content_type, content)
    SELECT m.id, 'dokument.pdf', 'application/pdf', $2 FROM m
    RETURNING outbox_id
"""
