"""``printable`` shows control characters as escapes, so a terminal never obeys them."""

from __future__ import annotations

import json

import pytest

from worker.cli.output import json_text, printable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Faktura FV/2026/12/0042 – Zażółć gęślą jaźń",
            "Faktura FV/2026/12/0042 – Zażółć gęślą jaźń",
        ),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("one\ntwo\tthree\r", "one\\x0atwo\\x09three\\x0d"),
        ("\x7f\x85\x9b31m", "\\x7f\\x85\\x9b31m"),
        ("\u202eevil\u202c \u2066isolated\u2069", "\\u202eevil\\u202c \\u2066isolated\\u2069"),
        ("\u00a0non-breaking, not a control", "\u00a0non-breaking, not a control"),
    ],
    ids=["plain", "window-title", "csi", "c0-whitespace", "del-and-c1", "bidi", "nbsp"],
)
def test_one_line_text_escapes_every_control(text: str, expected: str) -> None:
    """On one line (table cells, fields) every C0 control, newline and tab included, DEL, every
    C1 control and the bidi overrides and isolates become visible escapes; the rest stays."""
    assert expected == printable(text)


def test_multi_line_text_keeps_its_line_breaks_and_tabs() -> None:
    """A block of lines (a body, a multi-line server reply) keeps \\n, \\r\\n as \\n, and tabs;
    a lone carriage return, which would let a line overwrite itself, is escaped."""
    text = "550-5.7.1 first\r\n550 5.7.1 \x1b]0;x\x07second\tcolumn\rhidden\n"
    expected = "550-5.7.1 first\n550 5.7.1 \\x1b]0;x\\x07second\tcolumn\\x0dhidden\n"
    assert expected == printable(text, lines=True)


def test_json_output_escapes_what_json_leaves_raw() -> None:
    """JSON escapes C0 only: DEL, C1 and bidi overrides are escaped too, and it stays JSON."""
    value = {"subject": "Faktura \x9b31m \u202eevil \x1b]0;x\x07 Zażółć"}
    text = json_text(value)
    assert not any(char in text for char in "\x1b\x07\x7f\x9b\u202e")
    assert value == json.loads(text)
    assert "Zażółć" in text  # non-ASCII text stays readable
