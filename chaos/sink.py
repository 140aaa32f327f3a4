"""The chaos run's SMTP server: a process of its own that writes down every message it accepts.

``python -m chaos.sink --port P --journal FILE --seed S --tempfail-rate R`` serves plain SMTP
(no TLS, no AUTH) on 127.0.0.1. At the end of DATA it decides, with a ``random.Random`` seeded
by ``S`` and the server's generation, whether to answer ``451 4.3.0`` (a temporary failure
the worker retries) or to accept. Either way it appends one JSON line to the journal first:

- ``{"event": "accepted", "message_id": ..., "sender": ..., "recipients": [...], ...}``
  is written *before* the ``250`` reply. A kill between the two shows up later as a message
  recorded twice (a possible duplicate), never as one the worker thinks is lost.
- ``{"event": "tempfail", ...}`` for every ``451`` answered.

Each line is one ``os.write`` on a file opened with ``O_APPEND``: once the call returns the
kernel has the line, so a SIGKILL of this process cannot lose it (only a crash of the machine
could, which the chaos run does not simulate; so no fsync).

:class:`SinkProcess` is the parent's handle: start, SIGKILL, start again on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TEMPFAIL_REPLY", "JournalEntry", "SinkProcess", "read_journal"]

HOST = "127.0.0.1"
TEMPFAIL_REPLY = "451 4.3.0 Temporary local problem, please try again later"
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


@dataclass(frozen=True)
class JournalEntry:
    """One line of the journal: a message accepted, or a temporary failure answered."""

    event: str  # "accepted" or "tempfail"
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    generation: int


def read_journal(path: Path) -> list[JournalEntry]:
    """Every complete line of the journal, in the order written."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue  # cannot happen with one write per line, but a torn line is no entry
        entries.append(
            JournalEntry(
                event=str(raw["event"]),
                message_id=str(raw["message_id"]),
                sender=str(raw["sender"]),
                recipients=tuple(raw["recipients"]),
                generation=int(raw["generation"]),
            )
        )
    return entries


# --- the server process ------------------------------------------------------------------


class _Recorder:
    """aiosmtpd handler: journals each message, then answers 250 or (sometimes) 451."""

    def __init__(
        self, journal_fd: int, rng: random.Random, rate: float, generation: int, delay: float
    ) -> None:
        self._fd = journal_fd
        self._rng = rng
        self._rate = rate
        self._generation = generation
        self._delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        tempfail = self._rng.random() < self._rate
        headers = _HEADERS.parsebytes(envelope.original_content or envelope.content)
        line = {
            "event": "tempfail" if tempfail else "accepted",
            "message_id": str(headers.get("Message-ID", "")).strip(),
            "sender": envelope.mail_from,
            "recipients": list(envelope.rcpt_tos),
            "generation": self._generation,
        }
        os.write(self._fd, (json.dumps(line) + "\n").encode())
        # A server that stores first and confirms a moment later, as real ones do: the time
        # in which a kill (of either side) leaves a stored message unconfirmed.
        await asyncio.sleep(self._delay)
        return TEMPFAIL_REPLY if tempfail else "250 2.0.0 OK: recorded"


def _serve(args: argparse.Namespace) -> None:
    port, journal, delay = args.port, args.journal, args.delay
    seed, rate, generation = args.seed, args.tempfail_rate, args.generation
    from aiosmtpd.smtp import SMTP  # noqa: PLC0415 - only the server process needs it

    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random(f"{seed}:{generation}")  # noqa: S311 - repeatable faults, not security
    handler = _Recorder(fd, rng, rate, generation, delay)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="chaos-sink", ident="chaos-sink"), HOST, port
        )
        print(server.sockets[0].getsockname()[1], flush=True)  # the parent waits for the port
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    try:
        asyncio.run(main())
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.sink", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tempfail-rate", type=float, default=0.05)
    parser.add_argument("--generation", type=int, default=1, help="which start of the server")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds from record to reply")
    args = parser.parse_args(argv)
    _serve(args)


# --- the parent's handle -----------------------------------------------------------------


class SinkProcess:
    """The sink as a child process: :meth:`start`, :meth:`kill` and start again, same port."""

    def __init__(
        self, journal: Path, log: Path, *, seed: int, tempfail_rate: float, delay: float
    ) -> None:
        self.journal = journal
        self._log = log
        self._seed = seed
        self._rate = tempfail_rate
        self._delay = delay
        self.port = 0
        self.generation = 0
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (on the port of the previous start, if any); wait until it listens."""
        self.generation += 1
        command = [
            sys.executable, "-m", "chaos.sink", "--port", str(self.port),
            "--journal", str(self.journal), "--seed", str(self._seed),
            "--tempfail-rate", str(self._rate), "--generation", str(self.generation),
            "--delay", str(self._delay),
        ]  # fmt: skip
        with self._log.open("a") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
            )
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while not line:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the SMTP sink did not start; see {self._log}")
            line = self._process.stdout.readline().strip()
        self.port = int(line)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, replies in progress are lost."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def pause(self) -> None:
        """SIGSTOP: freezes every SMTP dialogue where it is (before a kill, see run.py)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go; for the end of the run."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
            process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self.kill()


if __name__ == "__main__":
    main()
