"""Log output is structured and never carries a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from worker.logs import REDACTED, configure_logging, forget_secrets, register_secret


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(log_format="json", level="debug", stream=stream)
    yield stream
    forget_secrets()
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_event_and_fields(json_stream: io.StringIO) -> None:
    """Each event is one JSON object with its name, level, time and fields."""
    structlog.get_logger("t").info("mail_sent", message_id=7, profile="wp")
    [line] = _lines(json_stream)
    assert line["event"] == "mail_sent"
    assert (line["message_id"], line["profile"], line["level"]) == (7, "wp", "info")
    assert "timestamp" in line


def test_secret_named_fields_are_redacted(json_stream: io.StringIO) -> None:
    """Fields named like secrets are replaced, however deep they are nested."""
    structlog.get_logger("t").info(
        "connecting", password="Konwalia369!", smtp={"login": "jan", "auth_password": "x1"}
    )
    [line] = _lines(json_stream)
    assert line["password"] == REDACTED
    assert line["smtp"] == {"login": "jan", "auth_password": REDACTED}


def test_known_secret_values_are_scrubbed_anywhere(json_stream: io.StringIO) -> None:
    """A registered password is removed from free text, e.g. a server's error message."""
    register_secret("Konwalia369!")
    structlog.get_logger("t").warning("auth_failed", error="bad login jan/Konwalia369! refused")
    [line] = _lines(json_stream)
    assert line["error"] == f"bad login jan/{REDACTED} refused"


def test_exception_text_is_scrubbed(json_stream: io.StringIO) -> None:
    """A traceback whose message holds a registered secret is written without it."""
    register_secret("pvlianprlvvrnrrn")
    try:
        raise RuntimeError("AUTH PLAIN jan pvlianprlvvrnrrn")
    except RuntimeError:
        structlog.get_logger("t").exception("send_crashed")
    assert "pvlianprlvvrnrrn" not in json_stream.getvalue()
    assert REDACTED in json_stream.getvalue()


def test_url_passwords_are_masked(json_stream: io.StringIO) -> None:
    """A database URL in a log line loses its password."""
    logging.getLogger("sqlalchemy").warning("cannot reach postgresql://svc:Hunter2@db/app")
    [line] = _lines(json_stream)
    assert line["event"] == "cannot reach postgresql://svc:***@db/app"


def test_console_format_is_readable_and_redacted() -> None:
    """The console renderer shows the event name and still redacts."""
    stream = io.StringIO()
    configure_logging(log_format="console", level="info", stream=stream)
    try:
        structlog.get_logger("t").info("profile_added", profile="wp", password="Konwalia369!")
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
    output = stream.getvalue()
    assert "profile_added" in output
    assert "Konwalia369!" not in output


def test_default_output_follows_a_swapped_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set up for stderr, lines go to the stderr of the moment, never to a replaced one."""
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging(log_format="json", level="info")
    try:
        monkeypatch.setattr("sys.stderr", second)
        first.close()  # as a test runner closes the stream it lent a finished command
        structlog.get_logger("t").info("mail_sent", message_id=1)
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
    assert "mail_sent" == json.loads(second.getvalue())["event"]
