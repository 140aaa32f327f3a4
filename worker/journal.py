"""Results the database did not take before the worker stopped, kept on disk until it does.

A worker that must stop while the database is unreachable still holds results: messages the
server accepted, attempts that failed. Dropping them would send those messages again once
their leases ran out. So they are written to a journal file under the data folder (written
whole, fsynced, then renamed into place), and the next worker that starts on the same folder
writes them to the database before it claims anything, then removes the file.

Each file is taken under an exclusive ``flock``: two workers starting at once on one volume
never replay the same file, and a worker that dies while replaying leaves the file (and its
lock goes with the process) for the next one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from worker.outcomes import Outcome
from worker.retry import PauseProfile

__all__ = ["JOURNAL_DIR", "JournalEntry", "ResultJournal"]

log = structlog.get_logger("worker.journal")

JOURNAL_DIR = "results-journal"
_FORMAT = 1
_TIMES = ("started_at", "finished_at", "next_attempt_at", "sent_at")


class JournalEntry:
    """One journal file, locked by this process until :meth:`release` or :meth:`remove`."""

    def __init__(self, path: Path, descriptor: int, outcomes: list[Outcome]) -> None:
        self.path = path
        self.outcomes = outcomes
        self._descriptor = descriptor

    def remove(self) -> None:
        """The results are in the database: delete the file (then let go of its lock)."""
        self.path.unlink(missing_ok=True)
        _sync_directory(self.path.parent)
        self.release()

    def release(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)  # closing the last descriptor drops the flock
            self._descriptor = -1


class ResultJournal:
    """The journal folder of one data folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, outcomes: list[Outcome], *, worker: str) -> Path:
        """Write ``outcomes`` durably; the file's path. Raises OSError if the disk refuses."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.directory / f"{stamp}-{secrets.token_hex(4)}.json"
        temporary = path.with_suffix(".tmp")
        document = {
            "format": _FORMAT,
            "worker": worker,
            "outcomes": [_to_json(outcome) for outcome in outcomes],
        }
        with temporary.open("w", encoding="utf-8") as file:
            json.dump(document, file, ensure_ascii=True)
            file.flush()
            os.fsync(file.fileno())
        temporary.rename(path)
        _sync_directory(self.directory)
        return path

    def take(self) -> Iterator[JournalEntry]:
        """Each journal file no other process is replaying, locked, with its results.

        A file that cannot be read is renamed ``*.unreadable``, logged and skipped: it needs a
        person.
        """
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.json")):
            entry = _locked(path)
            if entry is not None:
                yield entry


def _locked(path: Path) -> JournalEntry | None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # replayed and removed by another worker meanwhile
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None  # another worker is replaying it
    if os.fstat(descriptor).st_nlink == 0:
        os.close(descriptor)  # removed between our open and our lock
        return None
    try:
        with os.fdopen(os.dup(descriptor), encoding="utf-8") as file:
            document = json.load(file)
        outcomes = [_from_json(item) for item in document["outcomes"]]
    except (ValueError, KeyError, TypeError) as exc:
        os.close(descriptor)
        unreadable = path.with_suffix(".unreadable")
        with contextlib.suppress(OSError):
            path.rename(unreadable)
        log.error("journal_unreadable", file=str(unreadable), error=f"{type(exc).__name__}: {exc}")
        return None
    return JournalEntry(path, descriptor, outcomes)


def _to_json(outcome: Outcome) -> dict[str, Any]:
    data = dataclasses.asdict(outcome)
    for name in _TIMES:
        if data[name] is not None:
            data[name] = data[name].isoformat()
    if outcome.pause is not None:
        data["pause"]["until"] = outcome.pause.until.isoformat()
    return data


def _from_json(data: dict[str, Any]) -> Outcome:
    values = dict(data)
    for name in _TIMES:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    if values["pause"] is not None:
        pause = values["pause"]
        values["pause"] = PauseProfile(
            until=datetime.fromisoformat(pause["until"]), reason=pause["reason"], hint=pause["hint"]
        )
    return Outcome(**values)


def _sync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
