"""A worker in the test's own event loop, and reading its HTTP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from tests.kit.processes import wait_until
from worker.crypto import load_cipher
from worker.db import asyncpg_dsn
from worker.settings import Settings
from worker.worker import Worker

__all__ = ["Samples", "http_get", "parse_metrics", "running_worker"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, *, listening: bool = True) -> AsyncIterator[Worker]:
    """A worker running in this event loop until the block ends.

    It has LISTENed when the block starts (unless ``listening`` is false: the database may be
    out of reach), and its endpoint listens if an address is set.
    """
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    engine = create_async_engine(url)
    worker = Worker(
        engine=engine, listen_dsn=asyncpg_dsn(url), settings=settings, cipher=load_cipher(settings)
    )
    task = asyncio.create_task(worker.run(), name="worker-under-test")

    async def ready() -> bool:
        if task.done():
            task.result()  # raises what stopped it
            raise AssertionError("the worker stopped before it was ready")
        endpoint_ready = settings.http_address is None or worker.http_port is not None
        return (worker.listening or not listening) and endpoint_ready

    try:
        await wait_until(ready, within=10, what="the worker listens")
        yield worker
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(task, timeout=20)
        finally:
            await engine.dispose()


async def http_get(
    port: int, path: str, *, method: str = "GET", accept: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` from urllib; an error status is returned, not raised."""

    def fetch() -> tuple[int, dict[str, str], bytes]:
        headers = {} if accept is None else {"Accept": accept}
        url = f"http://127.0.0.1:{port}{path}"
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http URL
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, dict(exc.headers), exc.read()

    return await asyncio.to_thread(fetch)


def parse_metrics(body: bytes) -> Samples:
    """Every sample of a scrape: ``(name, sorted labels) -> value``."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
