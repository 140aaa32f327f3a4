"""The chaos run's hostile producer: bad and forged rows among the good ones, all run long.

It logs in as two producer roles made as docs/security.md tells an administrator to (its SQL
blocks run as written): ``shop_app``, with the page's grants, and ``legacy_app``, a producer
that was also given INSERT on every column (a service with broad rights). Every round it
tries what issue 11 reproduced:

- rows a worker cannot hold (``not_before`` in the year 10000 or ``infinity``, ``expires_at``
  in 10000): the database must refuse each;
- forged delivery state by ``shop_app`` (a row inserted as ``sent``, a chosen Message-ID, its
  own row flipped back to ``pending``, another producer's message cancelled): refused, or
  ``false``;
- forged delivery state by ``legacy_app`` (a row inserted ``cancelled`` with ``sent_at`` in
  2126 on the capped profile, one inserted ``sending`` with a lease to 2126, one inserted
  ``sent`` with its own Message-ID): accepted but reset, so each is an ordinary message;
- an attachment larger than the workers' limit, and an address with a control character:
  accepted, and each must end ``failed`` with its reason.

Rows it inserts carry the idempotency key ``hostile-<kind>-<round>``, so the verdict finds
them even when a database restart swallowed an insert's answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

__all__ = ["EXPECTED_FAILURES", "KEY_PREFIX", "HostileProducer", "setup_roles"]

KEY_PREFIX = "hostile-"
# Kinds of accepted hostile rows that must fail, and a part of the reason each must give.
EXPECTED_FAILURES = {
    "oversize": "MAILWORKER_MAX_MESSAGE_BYTES",
    "bad_address": "control character",
}
_DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"
_SQL_BLOCK = re.compile(r"^<!-- doc-test: ([^>]*?) -->\n```sql\n(.*?)^```$", re.M | re.S)
_SETUP_BLOCKS = ("roles", "producer grants", "producer login", "worker grants")
# The second producer: in the page's group, and also given INSERT on every column.
_LEGACY_ROLE = """
CREATE ROLE legacy_app LOGIN IN ROLE mail_producer;
GRANT INSERT ON mail.outbox, mail.attachment TO legacy_app;
"""
# A database going down or starting up, not an answer to what was tried.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
)


def _dsn(url: str, role: str | None = None) -> str:
    dsn = make_url(url).set(drivername="postgresql")
    return (dsn if role is None else dsn.set(username=role)).render_as_string(hide_password=False)


async def setup_roles(url: str) -> None:
    """Run docs/security.md's set-up as written, and add ``legacy_app``."""
    blocks = dict(_SQL_BLOCK.findall(_DOC.read_text(encoding="utf-8")))
    connection = await asyncpg.connect(_dsn(url))
    try:
        for name in _SETUP_BLOCKS:
            await connection.execute(blocks[name])
        await connection.execute(_LEGACY_ROLE)
    finally:
        await connection.close()


@dataclass
class HostileProducer:
    """Tries every round of attacks; counts what was refused and what surprised."""

    url: str
    main_profile: str
    capped_profile: str
    max_message_bytes: int
    some_good_id: Callable[[], int | None]  # an innocent message to try to cancel
    rounds: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    acknowledged: dict[str, str] = field(default_factory=dict)  # key -> kind, insert answered
    surprises: list[str] = field(default_factory=list)

    async def run(self, *, every: float, stop: asyncio.Event) -> None:
        """A round every ``every`` seconds until ``stop``; a database outage skips rounds."""
        while not stop.is_set():
            with contextlib.suppress(*_CONNECTION_ERRORS):  # the next round tries again
                await self.round()
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    async def round(self) -> None:
        shop = await asyncpg.connect(_dsn(self.url, "shop_app"))
        legacy = await asyncpg.connect(_dsn(self.url, "legacy_app"))
        try:
            await self._refused_by_the_database(shop)
            await self._forgeries_refused(shop)
            await self._forgeries_reset(legacy)
            await self._rows_that_must_fail(shop)
        finally:
            await shop.close()
            await legacy.close()

    def _key(self, kind: str) -> str:
        return f"{KEY_PREFIX}{kind}-{self.rounds}"

    def _recipient(self, kind: str) -> str:
        return f"{kind.replace('_', '-')}-{self.rounds}@example.com"

    async def _expect_refusal(
        self,
        connection: asyncpg.Connection,
        kind: str,
        sql: str,
        *args: object,
        error: type[asyncpg.PostgresError],
    ) -> None:
        try:
            await connection.execute(sql, *args)
        except error:
            self.refused[kind] += 1
            return
        except _CONNECTION_ERRORS:
            raise
        except asyncpg.PostgresError as exc:
            self.surprises.append(f"{kind}: refused for another reason: {exc}")
            return
        self.surprises.append(f"{kind}: accepted")

    async def _refused_by_the_database(self, shop: asyncpg.Connection) -> None:
        for kind, column, value in (
            ("far_future", "not_before", "10000-01-01"),
            ("infinite", "not_before", "infinity"),
            ("expires_far", "expires_at", "10000-01-01"),
        ):
            await self._expect_refusal(
                shop,
                kind,
                f"INSERT INTO mail.outbox (to_addrs, subject, idempotency_key, {column})"  # noqa: S608 - fixed names
                f" VALUES ($1, 'hostile', $2, $3::text::timestamptz)",
                [self._recipient(kind)],
                self._key(kind),
                value,
                error=asyncpg.CheckViolationError,
            )

    async def _forgeries_refused(self, shop: asyncpg.Connection) -> None:
        denied = asyncpg.InsufficientPrivilegeError
        await self._expect_refusal(
            shop,
            "insert_as_sent",
            "INSERT INTO mail.outbox (to_addrs, subject, status, sent_at)"
            " VALUES ($1, 'hostile', 'sent', now() + interval '100 years')",
            [self._recipient("insert_as_sent")],
            error=denied,
        )
        await self._expect_refusal(
            shop,
            "chosen_message_id",
            "INSERT INTO mail.outbox (to_addrs, subject, message_id) VALUES ($1, 'hostile', $2)",
            [self._recipient("chosen_message_id")],
            f"<chosen-{self.rounds}@example.com>",
            error=denied,
        )
        await self._expect_refusal(
            shop,
            "flip_to_pending",
            "UPDATE mail.outbox SET status = 'pending', attempts = 0",
            error=denied,
        )
        victim = self.some_good_id()
        if victim is not None:
            cancelled = await shop.fetchval("SELECT mail.cancel_message($1, 'hostile')", victim)
            if cancelled is False:
                self.refused["cancel_another"] += 1
            else:
                self.surprises.append(f"cancel_another: message {victim} answered {cancelled}")

    async def _forgeries_reset(self, legacy: asyncpg.Connection) -> None:
        for kind, profile, state in (
            ("forged_cancelled_capped", self.capped_profile,
             "'cancelled', now() + interval '100 years', NULL, NULL, NULL"),
            ("forged_sending", self.main_profile,
             "'sending', NULL, 'ghost', now() + interval '100 years', NULL"),
            ("forged_sent", self.main_profile,
             f"'sent', now(), NULL, NULL, '<forged-{self.rounds}@example.com>'"),
        ):  # fmt: skip
            await self._insert(
                legacy,
                kind,
                "INSERT INTO mail.outbox (profile, to_addrs, subject, idempotency_key, status,"  # noqa: S608 - fixed values
                " sent_at, claimed_by, lease_expires_at, message_id)"
                f" VALUES ($1, $2, 'forged', $3, {state}) RETURNING id",
                profile,
                [self._recipient(kind)],
                self._key(kind),
            )

    async def _rows_that_must_fail(self, shop: asyncpg.Connection) -> None:
        await self._insert(
            shop,
            "oversize",
            "WITH m AS (INSERT INTO mail.outbox (profile, to_addrs, subject, idempotency_key)"
            " VALUES ($1, $2, 'too large', $3) RETURNING id)"
            " INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
            " SELECT m.id, 'big.bin', 'application/octet-stream', $4 FROM m RETURNING outbox_id",
            self.main_profile,
            [self._recipient("oversize")],
            self._key("oversize"),
            b"\0" * (self.max_message_bytes + 1024),
        )
        await self._insert(
            shop,
            "bad_address",
            "INSERT INTO mail.outbox (profile, to_addrs, subject, idempotency_key)"
            " VALUES ($1, $2, 'bad address', $3) RETURNING id",
            self.main_profile,
            ['"bad\tname"@example.com'],
            self._key("bad_address"),
        )

    async def _insert(
        self, connection: asyncpg.Connection, kind: str, sql: str, *args: object
    ) -> None:
        try:
            await connection.fetchval(sql, *args)
        except _CONNECTION_ERRORS:
            raise
        except asyncpg.PostgresError as exc:
            self.surprises.append(f"{kind}: refused: {exc}")
            return
        self.acknowledged[self._key(kind)] = kind
