"""Whether a worker is well, and its numbers: ``/healthz`` and ``/metrics`` over plain HTTP.

:func:`assess` is the health decision, a pure function of :class:`Vitals`. :class:`HttpEndpoint`
serves it and the metrics of :mod:`worker.metrics` with :func:`asyncio.start_server` and a
minimal HTTP/1.1 handler: one request per connection, ``GET`` and ``HEAD`` only, the request
head bounded in size and every exchange in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db import DATABASE_ERRORS
from worker.errors import ConfigurationError, first_line
from worker.metrics import DatabaseSnapshot, WorkerMetrics
from worker.repository import Repository
from worker.settings import split_address

__all__ = ["DATABASE_CHECK_TIMEOUT", "Health", "HttpEndpoint", "Vitals", "WorkerState", "assess"]

log = structlog.get_logger("worker.health")

DATABASE_CHECK_TIMEOUT = 3.0  # seconds a health check or a scrape waits for the database
REQUEST_TIMEOUT = 10.0  # seconds to read one request and answer it
MAX_REQUEST_HEAD = 16 * 1024  # bytes of request line and headers
PATHS = ("/healthz", "/metrics")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerState:
    """What the health decision needs from the worker itself, at one moment."""

    saturated: bool  # every slot is busy, so no claim is due
    stopping: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class Vitals:
    """Everything the health decision looks at. Times are :func:`time.monotonic` seconds."""

    now: float
    started: float  # when the worker started: the reference before its first turn and claim
    last_turn: float | None  # the delivery loop's last turn
    last_claim: float | None  # the last claim that reached the database
    state: WorkerState
    database_error: str | None  # None: the database answered


@dataclasses.dataclass(frozen=True)
class Health:
    """Each check's verdict: ``"ok"`` or what is wrong."""

    checks: Mapping[str, str]

    @property
    def failing(self) -> list[str]:
        return [name for name, verdict in self.checks.items() if verdict != "ok"]

    @property
    def healthy(self) -> bool:
        return not self.failing


def assess(vitals: Vitals, *, stale_after: float) -> Health:
    """Healthy: the database answers, the loop turns, claims reach the database, no stop asked.

    A worker whose every slot is busy claims nothing, on purpose: its claim check passes.
    """
    claim = "ok"
    if not vitals.state.saturated:
        claim = _recent(vitals.last_claim, vitals, stale_after, "no claim reached the database")
    database = "ok"
    if vitals.database_error is not None:
        database = f"unreachable: {vitals.database_error}"
    return Health(
        {
            "database": database,
            "loop": _recent(vitals.last_turn, vitals, stale_after, "the loop has not turned"),
            "claim": claim,
            "running": "stopping" if vitals.state.stopping else "ok",
        }
    )


def _recent(moment: float | None, vitals: Vitals, stale_after: float, what: str) -> str:
    since = vitals.now - (vitals.started if moment is None else moment)
    return "ok" if since <= stale_after else f"{what} for {since:.0f} s"


@dataclasses.dataclass(frozen=True)
class _Response:
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, head_only: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def _text(status: HTTPStatus, *headers: tuple[str, str]) -> _Response:
    return _Response(status, f"{status.value} {status.phrase}\n".encode(), headers=headers)


class HttpEndpoint:
    """``/healthz`` and ``/metrics`` of one worker on ``address`` (``host:port``; port 0: any).

    ``state`` tells whether the worker is saturated or stopping; ``stale_after`` is how long
    the loop may go without a turn, or a worker with a free slot without a claim.
    """

    def __init__(
        self,
        *,
        address: str,
        engine: AsyncEngine,
        metrics: WorkerMetrics,
        state: Callable[[], WorkerState],
        worker: str,
        stale_after: float,
    ) -> None:
        self.address = address
        self._host, self._port = split_address(address)
        self._engine = engine
        self._metrics = metrics
        self._state = state
        self._worker = worker
        self._stale_after = stale_after
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()
        self._snapshot_failing = False
        self.port: int | None = None  # the bound port, once listening

    async def start(self) -> None:
        """Listen, or raise :class:`ConfigurationError` saying why the address cannot be used."""
        try:
            self._server = await asyncio.start_server(
                self._serve, self._host, self._port, limit=MAX_REQUEST_HEAD
            )
        except OSError as exc:
            why = exc.strerror or str(exc)
            message = f"cannot listen on {self.address} (MAILWORKER_HTTP_ADDRESS): {why}"
            raise ConfigurationError(message) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("http_listening", host=self._host, port=self.port)

    async def close(self) -> None:
        """Stop listening and end the exchanges still open."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def health(self) -> Health:
        """The health of the worker now; asks the database, within a few seconds."""
        database_error = await self._database_error()
        vitals = Vitals(
            now=time.monotonic(),
            started=self._metrics.started,
            last_turn=self._metrics.last_turn,
            last_claim=self._metrics.last_claim,
            state=self._state(),
            database_error=database_error,
        )
        return assess(vitals, stale_after=self._stale_after)

    # --- HTTP --------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                writer.write(await self._answer(reader))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away, or was too slow: there is nobody to answer
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE).encode(head_only=False)
        request = _parse(head)
        if request is None:
            return _text(HTTPStatus.BAD_REQUEST).encode(head_only=False)
        method, path, accept = request
        return (await self._route(method, path, accept)).encode(head_only=method == "HEAD")

    async def _route(self, method: str, path: str, accept: str) -> _Response:
        if path not in PATHS:
            return _text(HTTPStatus.NOT_FOUND)
        if method not in ("GET", "HEAD"):
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, ("Allow", "GET, HEAD"))
        try:
            if path == "/healthz":
                return await self._healthz()
            return await self._scrape(accept)
        except Exception:  # a bug in a handler answers 500; it must not stop the worker
            log.exception("http_request_failed", path=path)
            return _text(HTTPStatus.INTERNAL_SERVER_ERROR)

    async def _healthz(self) -> _Response:
        health = await self.health()
        body: dict[str, object] = {
            "status": "ok" if health.healthy else "unhealthy",
            "worker": self._worker,
            "checks": dict(health.checks),
        }
        if not health.healthy:
            body["failing"] = health.failing
        status = HTTPStatus.OK if health.healthy else HTTPStatus.SERVICE_UNAVAILABLE
        return _Response(status, (json.dumps(body) + "\n").encode(), "application/json")

    async def _scrape(self, accept: str) -> _Response:
        self._metrics.update_from_database(await self._snapshot())
        body, content_type = self._metrics.exposition(accept)
        return _Response(HTTPStatus.OK, body, content_type)

    # --- the database ------------------------------------------------------------------------

    async def _database_error(self) -> str | None:
        try:
            async with asyncio.timeout(DATABASE_CHECK_TIMEOUT):
                async with self._engine.connect() as connection:
                    await Repository(connection).ping()
        except TimeoutError:
            return f"no answer within {DATABASE_CHECK_TIMEOUT:g} s"
        except DATABASE_ERRORS as exc:
            # The class only: this answer needs no authentication; the log has the details.
            return type(exc.__cause__ or exc).__name__
        return None

    async def _snapshot(self) -> DatabaseSnapshot | None:
        try:
            async with asyncio.timeout(DATABASE_CHECK_TIMEOUT):
                async with self._engine.connect() as connection:
                    snapshot = await Repository(connection).metrics_snapshot()
        except DATABASE_ERRORS as exc:
            if not self._snapshot_failing:
                log.warning("metrics_database_unavailable", error=first_line(exc))
            self._snapshot_failing = True
            return None
        self._snapshot_failing = False
        return snapshot


def _parse(head: bytes) -> tuple[str, str, str] | None:
    """``(method, path, accept)`` of a request head, or None if it is not HTTP/1.x."""
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    method, target, _version = parts
    accept = ""
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "accept":
            accept = value.strip()
    return method, target.split("?", 1)[0], accept
