"""Text from producers and servers reaches the operator's terminal escaped, never obeyed.

A producer writes the outbox row (subject, addresses, headers, bodies, attachment names) and
SMTP servers write the reasons, replies and pauses; any of them may hold terminal escape
sequences (``ESC ] 0 ; title BEL`` retitles the window, ``ESC [ 2 J`` clears it), C1 controls
or bidi overrides. The commands run as an operator runs them (subprocesses against this test's
database), and their output is read as bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func

from tests.kit.rows import insert_attachment, insert_attempt, insert_message, insert_profile

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
TITLE = "\x1b]0;pwned\x07"  # sets the terminal window's title
TITLE_SHOWN = "\\x1b]0;pwned\\x07"
CLEAR = "\x1b[2J"
C1_CSI = "\x9b31m"  # a one-byte CSI: red text on some terminals
RIGHT_TO_LEFT = "\u202e"
# What a terminal obeys instead of showing; line breaks and tabs only move the cursor on.
CONTROLS = frozenset(
    chr(code)
    for code in [
        *range(0x20),
        0x7F,
        *range(0x80, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
) - {"\n", "\t"}


def _mailworker(env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stderr.decode(errors="replace")
    return result.stdout.decode("utf-8")


def _raw_controls(output: str) -> list[str]:
    """The controls in ``output``, as escapes, so a failure shows them instead of obeying."""
    return sorted({repr(char) for char in output if char in CONTROLS})


@pytest.fixture
def hostile_message(database_url: str) -> int:
    """A failed message with escapes in every field a producer or a server writes."""
    insert_profile(
        database_url,
        "biuro",
        is_default=True,
        paused_until=func.now() + timedelta(hours=1),
        pause_reason=f"535 5.7.8 {TITLE}refused{C1_CSI}",
        pause_hint=f"{RIGHT_TO_LEFT}check the password{CLEAR}",
        pause_count=1,
    )
    message_id = insert_message(
        database_url,
        profile="biuro",
        status="failed",
        to_addrs=[f"anna{CLEAR}@example.pl"],
        cc_addrs=[f"{RIGHT_TO_LEFT}lpe.elpmaxe@nowak"],
        subject=f"Faktura {TITLE}FV/2026/12/0042",
        status_reason=f"550 5.1.1 {TITLE}no such user\r\n{CLEAR}second line",
        last_error=f"{C1_CSI}refused",
        smtp_response=f"550 {TITLE}",
        headers={"X-Ticket": f"\x7f{TITLE}"},
        body_text=f"Dzień dobry{TITLE}\n{CLEAR}linia 2\r\nlinia\t3\n",
        body_html=f"<p>{TITLE}</p>",
    )
    insert_attempt(
        database_url,
        message_id,
        profile="biuro",
        worker_id=f"w{TITLE}",
        smtp_code=550,
        smtp_text=f"5.1.1 {TITLE}no such user\n5.1.1 {CLEAR}see the docs",
        error=f"{CLEAR}rejected",
        tls_version=f"TLSv1.3{C1_CSI}",
        recipients={f"anna{CLEAR}@example.pl": {"code": 550, "text": f"{TITLE}unknown"}},
    )
    insert_attachment(database_url, message_id, f"faktura{TITLE}.pdf", b"%PDF-1.7")
    return message_id


def test_messages_list_escapes_what_producers_and_servers_wrote(
    cli_env: dict[str, str], hostile_message: int
) -> None:
    """messages list shows subject, recipient and reason with \\x1b-style escapes: no control
    character reaches the terminal."""
    output = _mailworker(cli_env, "messages", "list")
    assert [] == _raw_controls(output)
    assert TITLE_SHOWN in output
    assert "anna\\x1b[2J@example.pl" in output


def test_messages_show_escapes_every_field_and_keeps_reply_lines(
    cli_env: dict[str, str], hostile_message: int
) -> None:
    """messages show escapes every field, header, attachment name, attempt reply and body; a
    multi-line server reply and the bodies keep their line breaks, nothing else raw."""
    output = _mailworker(cli_env, "messages", "show", str(hostile_message))
    assert [] == _raw_controls(output)
    lines = output.splitlines()
    for expected in [
        f"Faktura {TITLE_SHOWN}FV/2026/12/0042",
        "anna\\x1b[2J@example.pl",
        "\\u202elpe.elpmaxe@nowak",
        '{"X-Ticket": "\\x7f\\u001b]0;pwned\\u0007"}',  # JSON escapes, and DEL escaped
        f"  faktura{TITLE_SHOWN}.pdf  application/octet-stream  8 bytes",
        f"      reply: 550 5.1.1 {TITLE_SHOWN}no such user",
        "      error: \\x1b[2Jrejected",
        f"  Dzień dobry{TITLE_SHOWN}",
        "  \\x1b[2Jlinia 2",
        "  linia\t3",
    ]:
        assert [] != [line for line in lines if expected in line], expected
    [reply] = [n for n, line in enumerate(lines) if line.startswith("      reply: ")]
    assert " " * len("      reply: ") + "5.1.1 \\x1b[2Jsee the docs" == lines[reply + 1]
    [reason] = [n for n, line in enumerate(lines) if line.startswith("status_reason ")]
    assert "\\x1b[2Jsecond line" == lines[reason + 1].strip()


def test_status_and_profiles_escape_the_servers_pause_reason(
    cli_env: dict[str, str], hostile_message: int
) -> None:
    """status, profiles list and profiles show print a pause reason and hint from a server
    escaped."""
    outputs = {
        "status": _mailworker(cli_env, "status"),
        "profiles list": _mailworker(cli_env, "profiles", "list"),
        "profiles show": _mailworker(cli_env, "profiles", "show", "biuro"),
    }
    assert {name: [] for name in outputs} == {
        name: _raw_controls(output) for name, output in outputs.items()
    }
    assert f"535 5.7.8 {TITLE_SHOWN}refused\\x9b31m" in outputs["status"]
    assert "\\u202echeck the password\\x1b[2J" in outputs["status"]
    assert f"535 5.7.8 {TITLE_SHOWN}refused\\x9b31m" in outputs["profiles show"]
    assert "\\u202echeck the password\\x1b[2J" in outputs["profiles show"]
