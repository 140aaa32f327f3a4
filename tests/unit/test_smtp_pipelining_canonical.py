"""The message's line endings before it is sized and sent (no I/O)."""

from __future__ import annotations

import pytest

from worker.smtp_pipelining import _canonical


def test_a_message_already_in_crlf_is_sent_as_it_is() -> None:
    message = b"Subject: x\r\n\r\nbody\r\n"
    assert message is _canonical(message)


@pytest.mark.parametrize(
    ("message", "sent"),
    [
        (b"Subject: x\n\nbody\n", b"Subject: x\r\n\r\nbody\r\n"),
        (b"Subject: x\r\n\r\nbody", b"Subject: x\r\n\r\nbody\r\n"),
        (b"Subject: x\r\n\r\nline\rother\r\n", b"Subject: x\r\n\r\nline\r\nother\r\n"),
        (b"Subject: x\r\n\r\nline\n\r\n", b"Subject: x\r\n\r\nline\r\n\r\n"),
    ],
    ids=["bare-lf", "no-final-crlf", "bare-cr", "mixed"],
)
def test_other_line_endings_become_crlf_as_aiosmtplib_would_send_them(
    message: bytes, sent: bytes
) -> None:
    assert sent == _canonical(message)
