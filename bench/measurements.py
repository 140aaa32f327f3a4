"""The timed measurements: worker throughput (plain, with attachments, over history), the
bare-aiosmtplib limit, idle latency and the enqueue rates."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import cpu
from bench.database import (
    PROFILE,
    SENDER,
    empty_outbox,
    fill_history,
    insert_messages,
    outbox_statuses,
    row,
)
from bench.processes import WORKER_ENV, wait_count, workers
from bench.results import Options, Results
from bench.sink import SmtpSink
from worker.mime import MessageContent, OutgoingAttachment, RenderedMessage, render
from worker.outbox import OutboxMessage, enqueue_and_commit, enqueue_many

__all__ = ["ENQUEUE_BATCH", "Bench", "content"]


# Messages a transaction in the batch enqueue rate, like a night's invoice run.
ENQUEUE_BATCH = 100


@dataclass
class Bench:
    options: Options
    engine: AsyncEngine
    url: str
    sink: SmtpSink
    secret_key: str
    directory: Path
    results: Results = field(default_factory=Results)

    def deadline(self, messages: int) -> float:
        """Ample time for ``messages``: even at 20 a second, or at a third of the rate four
        round trips a message allow over the sink's delay."""
        delay = self.sink.delay
        four_trips = messages * (4 * delay.rtt + delay.accept) / self.options.connections
        return max(60.0, messages / 20, 3 * four_trips)

    async def settle_and_check(self, name: str, expected: int) -> int:
        """After a short quiet time: the sink got exactly ``expected`` (none missing or twice)."""
        await asyncio.sleep(0.3)
        counted = self.sink.count
        self.results.check(
            counted == expected and self.sink.recipients == expected,
            f"{name}: the sink accepted {counted} messages with {self.sink.recipients}"
            f" recipients, expected {expected}",
        )
        return counted

    async def worker_throughput(
        self,
        name: str,
        processes: int,
        messages: int,
        *,
        attached: bytes | None = None,
        after_id: int = 0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``messages`` rows committed at once to ``processes`` idle workers, to the last
        acceptance; rows up to ``after_id`` (history) stay in the table. ``settings`` are
        the workers' environment beside ``WORKER_ENV``; ``chunked`` counts, per run, the
        messages that came with BDAT; ``cpu_ms_per_message`` says who spent the CPU time."""
        rates, counts, chunked, spent = [], [], [], []
        environment = {**WORKER_ENV, **(settings or {})}
        for _ in range(self.options.runs):
            await empty_outbox(self.engine, after_id=after_id)
            self.sink.reset()
            with workers(
                self.url, self.secret_key, self.directory, processes, environment
            ) as started:
                await started.wait_listening(self.engine)
                async with self.engine.begin() as connection:
                    await insert_messages(connection, messages, attached)
                committed = time.monotonic()
                # After the commit: what the producer's INSERT costs the server is not sending.
                before = cpu.snapshot(started.pids, self.sink.pid)
                await wait_count(
                    self.sink, messages, self.deadline(messages), started.assert_running
                )
                spent.append(
                    cpu.per_message(before, cpu.snapshot(started.pids, self.sink.pid), messages)
                )
                rates.append(messages / (self.sink.last_at - committed))
                counts.append(await self.settle_and_check(name, messages))
                chunked.append(self.sink.chunked)
            statuses = await outbox_statuses(self.engine, after_id=after_id)
            self.results.check(
                statuses == {"sent": messages}, f"{name}: outbox statuses {statuses}"
            )
        await empty_outbox(self.engine, after_id=after_id)
        self.results.rate(name, rates, counts, messages)
        self.results.figures[name]["chunked"] = chunked
        self.results.figures[name]["cpu_ms_per_message"] = cpu.medians(spent)

    async def history(self) -> None:
        """``worker_1`` again, with ``history_rows`` sent messages already in the outbox."""
        began = time.monotonic()
        last_id = await fill_history(self.engine, self.options.history_rows)
        filled = time.monotonic() - began
        statuses = await outbox_statuses(self.engine)
        self.results.check(
            statuses == {"sent": self.options.history_rows}, f"history: outbox statuses {statuses}"
        )
        await self.worker_throughput("worker_1_history", 1, self.options.messages, after_id=last_id)
        figure = self.results.figures["worker_1_history"]
        figure["history_rows"], figure["history_fill_seconds"] = self.options.history_rows, filled
        await empty_outbox(self.engine)

    async def limit(self, name: str, messages: int, attached: bytes | None = None) -> None:
        n, connections = messages, self.options.connections
        rendered = [render(SENDER, content(i, attached)) for i in range(n)]
        rates, counts, spent = [], [], []
        senders = [os.getpid()]  # the loop runs in the bench process
        for _ in range(self.options.runs):
            self.sink.reset()
            queue = iter(rendered)
            before = cpu.snapshot(senders, self.sink.pid)
            started = time.monotonic()
            await asyncio.gather(*(self._send_all(queue) for _ in range(connections)))
            spent.append(cpu.per_message(before, cpu.snapshot(senders, self.sink.pid), n))
            rates.append(n / (self.sink.last_at - started))
            counts.append(await self.settle_and_check(name, n))
        self.results.rate(name, rates, counts, n)
        self.results.figures[name]["cpu_ms_per_message"] = cpu.medians(spent)

    async def _send_all(self, queue: Iterator[RenderedMessage]) -> None:
        """One reused connection sending from the shared ``queue`` until it is empty."""
        smtp = aiosmtplib.SMTP(hostname=self.sink.host, port=self.sink.port, start_tls=False)
        await smtp.connect()
        try:
            for message in queue:
                await smtp.sendmail(message.sender, message.recipients, message.data)
        finally:
            await smtp.quit()

    async def attachment(self) -> None:
        """``worker_1`` and the limit with a 100 KB attachment on every message."""
        attached = os.urandom(self.options.attachment_bytes)  # a PDF does not compress either
        n = self.options.attachment_messages
        await self.worker_throughput("worker_1_attachment", 1, n, attached=attached)
        await self.limit("limit_attachment", n, attached)
        size = len(render(SENDER, content(0, attached)).data)
        for name in ("worker_1_attachment", "limit_attachment"):
            self.results.figures[name]["message_bytes"] = size

    async def latency(self) -> None:
        samples: list[float] = []
        await empty_outbox(self.engine)
        self.sink.reset()
        insert = text(
            "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
            " VALUES (:profile, :to_addrs, :subject, :body_text)"
        )
        with workers(self.url, self.secret_key, self.directory, 1) as started:
            await started.wait_listening(self.engine)
            for number in range(self.options.latency_samples):
                await asyncio.sleep(0.2)  # the worker is idle again
                async with self.engine.begin() as connection:
                    await connection.execute(insert, row(number))
                committed = time.monotonic()
                await wait_count(self.sink, number + 1, 30, started.assert_running)
                samples.append((self.sink.last_at - committed) * 1000)
            counted = await self.settle_and_check("latency", self.options.latency_samples)
        ordered = sorted(samples)
        self.results.figures["latency"] = {
            "unit": "ms",
            "p50": statistics.median(ordered),
            "p99": ordered[max(0, round(0.99 * len(ordered)) - 1)],  # nearest rank
            "min": ordered[0],
            "max": ordered[-1],
            "samples": samples,
            "messages": self.options.latency_samples,
            "counted": [counted],
        }

    async def enqueue(
        self, name: str, write: Callable[[range], Awaitable[None]], *, batch: int = 1
    ) -> None:
        """Rows a second when ``write`` puts ``batch`` numbered messages in at a time."""
        n = self.options.messages
        rates, counts = [], []
        for _ in range(self.options.runs):
            await empty_outbox(self.engine)
            started = time.monotonic()
            for first in range(0, n, batch):
                await write(range(first, min(n, first + batch)))
            rates.append(n / (time.monotonic() - started))
            statuses = await outbox_statuses(self.engine)
            counts.append(sum(statuses.values()))
            self.results.check(statuses == {"pending": n}, f"{name}: outbox statuses {statuses}")
        await empty_outbox(self.engine)
        self.results.rate(name, rates, counts, n)

    async def enqueue_sql(self, numbers: range) -> None:
        [number] = numbers
        async with self.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
                    " VALUES (:profile, :to_addrs, :subject, :body_text)"
                ),
                row(number),
            )

    async def enqueue_api(self, numbers: range) -> None:
        [number] = numbers
        values = row(number)
        await enqueue_and_commit(
            self.engine,
            to=values["to_addrs"],
            subject=values["subject"],
            body_text=values["body_text"],
            profile=PROFILE,
        )

    async def enqueue_api_batch(self, numbers: range) -> None:
        messages = [
            OutboxMessage(
                to=tuple(values["to_addrs"]),
                subject=values["subject"],
                body_text=values["body_text"],
                profile=PROFILE,
            )
            for values in map(row, numbers)
        ]
        async with self.engine.begin() as connection:
            await enqueue_many(connection, messages)


def content(number: int, attached: bytes | None = None) -> MessageContent:
    values = row(number)
    files = (
        ()
        if attached is None
        else (
            OutgoingAttachment(
                filename="faktura.pdf", content_type="application/pdf", content=attached
            ),
        )
    )
    return MessageContent(
        to=values["to_addrs"],
        cc=(),
        bcc=(),
        subject=values["subject"],
        body_text=values["body_text"],
        body_html=None,
        headers={},
        message_id=f"<bench.{number}@example.com>",
        attachments=files,
    )
