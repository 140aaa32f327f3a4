"""The envelope and message as they are sent: addresses quoted, line endings (no I/O)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiosmtplib.email import quote_address

from worker.smtp_pipelining import _canonical, _quoted


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


@pytest.mark.parametrize(
    "address",
    [
        "anna.nowak@example.pl",
        "faktury+2026@sklep.example.com",
        "o'brien@example.ie",
        "a..b@example.com",
        ".kropka@example.com",
        "Anna Nowak <anna@example.pl>",
        '"anna nowak"@example.pl',
        "zażółć@example.pl",
        "anna@[127.0.0.1]",
        "  anna@example.pl ",
        "anna@example.pl>",
        "anna@example.pl\r\nRCPT TO:<inny@example.com>",
        "anna@example.pl NOTIFY=NEVER",
    ],
)
def test_an_envelope_address_is_quoted_as_aiosmtplib_quotes_it(address: str) -> None:
    """The shortcut for a plain address gives what aiosmtplib's parser gives, or its error."""
    assert _result(quote_address, address) == _result(_quoted, address)


def _result(quote: Callable[[str], str], address: str) -> str:
    try:
        return quote(address)
    except ValueError as exc:
        return f"ValueError: {exc}"
