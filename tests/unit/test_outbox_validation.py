"""Enqueue refuses bad messages before they reach the database, naming every problem."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.errors import InvalidMessage
from worker.models import outbox
from worker.outbox import DEFAULT_MAX_MESSAGE_BYTES, Attachment, OutboxMessage, recipient_count
from worker.settings import Settings

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PDF = Attachment("faktura.pdf", b"%PDF-1.4\n%%EOF\n")


def good_message(**changes: Any) -> OutboxMessage:
    """A message that passes every check, changed by ``changes``."""
    message = OutboxMessage(
        to=("jan.kowalski@example.pl",),
        cc=("anna.nowak@example.pl",),
        bcc=("archiwum@example.pl",),
        subject="Wiadomość testowa 1",
        body_text="Dzień dobry",
        body_html="<p>Dzień dobry</p>",
        profile="biuro",
        attachments=(PDF,),
        headers={"X-Order-Id": "1042", "Reply-To": "Dział obsługi <obsluga@example.pl>"},
        priority=5,
        not_before=NOON,
        expires_at=NOON + timedelta(days=1),
        idempotency_key="order-1042",
        kind="notification",
    )
    return dataclasses.replace(message, **changes)


def headlines(problems: list[str]) -> list[str]:
    """Problems without the address library's detail after ``": "``, which may change."""
    return [problem.split(": ")[0] for problem in problems]


def test_a_good_message_has_no_problems() -> None:
    """A complete, correct message (Polish text, PDF, Reply-To override) passes."""
    expected: list[str] = []
    assert expected == good_message().problems()


def test_no_recipients() -> None:
    """A message with no address in to, cc or bcc is refused."""
    message = good_message(to=(), cc=(), bcc=())
    expected = ["no recipients: give at least one address in to, cc or bcc"]
    assert expected == message.problems()


def test_bcc_alone_is_enough() -> None:
    """One blind-copy recipient is a recipient."""
    expected: list[str] = []
    assert expected == good_message(to=(), cc=()).problems()


def test_every_invalid_address_is_named() -> None:
    """Each bad address is reported with its field, not only the first one."""
    message = good_message(to=("jan@", "ok@example.pl"), cc=("anna",), bcc=("",))
    expected = [
        "to address 'jan@' is not a valid e-mail address",
        "cc address 'anna' is not a valid e-mail address",
        "bcc address is empty",
    ]
    assert expected == headlines(message.problems())


def test_display_names_are_accepted_in_every_recipient_field() -> None:
    """``Name <addr>``, a quoted name with a comma and a Polish name are recipients as a mail
    program takes them, in To, Cc and Bcc alike."""
    message = good_message(
        to=("Jan Kowalski <jan@example.pl>", '"Kowalski, Jan" <jk@example.pl>'),
        cc=("Zażółć Gęślą <anna@example.pl>",),
        bcc=("Archiwum <archiwum@example.pl>",),
    )
    expected: list[str] = []
    assert expected == message.problems()


@pytest.mark.parametrize(
    "address", ["jan@przykład.pl", "jan@Przykład.PL", "zażółć@example.pl", "zażółć@przykład.pl"]
)
def test_international_addresses_are_accepted(address: str) -> None:
    """A Unicode domain (sent in its xn-- form) and a non-ASCII local part (sent with
    SMTPUTF8) are accepted as written."""
    expected: list[str] = []
    assert expected == good_message(to=(address,)).problems()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (
            "zły adres@",
            "to address 'zły adres@' is not a valid e-mail address: The email address contains"
            " invalid characters before the @-sign: SPACE.",
        ),
        (
            "jan.kowalski.example.pl",
            "to address 'jan.kowalski.example.pl' is not a valid e-mail address: An email address"
            " must have an @-sign.",
        ),
        (
            "Jan <jan@przykład..pl>",
            "to address 'Jan <jan@przykład..pl>' is not a valid e-mail address: An email address"
            " cannot have two periods in a row.",
        ),
        (
            "a@example.pl, b@example.pl",
            "to address 'a@example.pl, b@example.pl' is not a valid e-mail address: it has ','"
            " outside double quotes: an entry holds one address, and a display name with ',' is"
            " written in double quotes",
        ),
        (
            "Jan (dom) <jan@example.pl>",
            "to address 'Jan (dom) <jan@example.pl>' is not a valid e-mail address: its display"
            " name 'Jan (dom)' has '(', ')', which only a name in double quotes may have"
            ' ("..." <address>)',
        ),
        (
            "Jan\t<jan@example.pl>",
            "to address 'Jan\\t<jan@example.pl>' contains a control character",
        ),
    ],
)
def test_a_bad_address_is_refused_saying_what_is_wrong(address: str, expected: str) -> None:
    """Each refusal names the mistake (a space, a missing @, a bad domain, two addresses,
    specials in a name, a control character), never "write the domain in its xn-- form"."""
    assert [expected] == good_message(to=(address,)).problems()


def test_one_address_under_two_display_names_counts_once() -> None:
    """The recipient count (for a profile's limits) counts addresses, not entries: display
    names, letter case and the xn-- form of a domain make no new recipient."""
    message = good_message(
        to=("Jan <jan@example.pl>", "anna@przykład.pl"),
        cc=("J. Kowalski <JAN@example.pl>",),
        bcc=("Anna <anna@xn--przykad-rjb.pl>",),
    )
    assert 2 == recipient_count(message)


def test_an_international_domain_in_its_ascii_form_is_accepted() -> None:
    """``przykład.pl`` written as ``xn--przykad-rjb.pl`` is an ordinary ASCII address."""
    expected: list[str] = []
    assert expected == good_message(to=("jan@xn--przykad-rjb.pl",)).problems()


@pytest.mark.parametrize("breaker", ["\r", "\n", "\r\n", "\0", "\u2028", "\x85"])
def test_line_breaks_in_the_subject_are_refused(breaker: str) -> None:
    """CR, LF, NUL and Unicode line separators in the subject could inject headers."""
    message = good_message(subject=f"Faktura{breaker}Bcc: ofiara@example.pl")
    expected = ["subject contains a line break or NUL character"]
    assert expected == message.problems()


@pytest.mark.parametrize("breaker", ["\r", "\n", "\0"])
def test_line_breaks_in_header_values_are_refused(breaker: str) -> None:
    """A header value with CR, LF or NUL could inject more headers."""
    message = good_message(headers={"X-Order-Id": f"1{breaker}Bcc: ofiara@example.pl"})
    expected = ["header X-Order-Id value contains a line break or NUL character"]
    assert expected == message.problems()


def test_nul_in_a_body_is_refused() -> None:
    """PostgreSQL text cannot store NUL, so a body containing one is refused up front."""
    message = good_message(body_text="a\0b", body_html="<p>\0</p>")
    expected = ["body_text contains a NUL character", "body_html contains a NUL character"]
    assert expected == message.problems()


def test_line_breaks_in_bodies_are_fine() -> None:
    """Bodies are multi-line text."""
    expected: list[str] = []
    assert expected == good_message(body_text="a\r\nb\nc", body_html="<p>\n</p>").problems()


@pytest.mark.parametrize(
    "name",
    [
        "From",
        "to",
        "CC",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Sender",
        "Content-Type",
        "content-transfer-encoding",
        "Content-Disposition",
    ],
)
def test_headers_the_service_writes_are_refused(name: str) -> None:
    """Addressing, date, identity and MIME headers belong to the service."""
    message = good_message(headers={name: "x"})
    expected = [f"header {name} is set by the mail service and cannot be given"]
    assert expected == message.problems()


@pytest.mark.parametrize(
    "headers",
    [
        {"Reply-To": "obsluga@example.pl"},
        {"Reply-To": "Dział obsługi <obsluga@example.pl>, szef@example.pl"},
        {"In-Reply-To": "<abc@example.pl>", "References": "<abc@example.pl>"},
        {"List-Unsubscribe": "<https://example.pl/wypisz?u=1>"},
        {"X-Priority": "1", "Auto-Submitted": "auto-generated"},
    ],
)
def test_other_headers_are_accepted(headers: dict[str, str]) -> None:
    """Reply-To (overriding the profile's), threading and custom headers may be given."""
    expected: list[str] = []
    assert expected == good_message(headers=headers).problems()


@pytest.mark.parametrize("name", ["X Order", "X-Order:", "", "Zamówienie", "X-\t", "X" * 77])
def test_invalid_header_names_are_refused(name: str) -> None:
    """A header name is 1 to 76 printable ASCII characters without spaces or a colon."""
    message = good_message(headers={name: "1"})
    expected = [
        f"header name {name!r} is not 1-76 printable ASCII characters without spaces or ':'"
    ]
    assert expected == message.problems()


def test_a_header_given_twice_in_different_case_is_refused() -> None:
    """Header names ignore case, so ``X-Tag`` and ``x-tag`` are the same header twice."""
    message = good_message(headers={"X-Tag": "a", "x-tag": "b"})
    expected = ["header x-tag is given twice (header names ignore case)"]
    assert expected == message.problems()


def test_a_header_value_must_be_text() -> None:
    """Header values are strings (JSON numbers are not)."""
    message = good_message(headers={"X-Order-Id": 1042})
    expected = ["header X-Order-Id value must be text, not int"]
    assert expected == message.problems()


@pytest.mark.parametrize(
    ("reply_to", "expected"),
    [
        ("obsluga@", "header Reply-To 'obsluga@' does not list e-mail addresses"),
        ("", "header Reply-To '' does not list e-mail addresses"),
        ("obsluga", "header Reply-To address 'obsluga' is not a valid e-mail address"),
        (
            "Biuro <biuro@żółw..pl>",
            "header Reply-To address 'biuro@żółw..pl' is not a valid e-mail address",
        ),
    ],
)
def test_an_invalid_reply_to_is_refused(reply_to: str, expected: str) -> None:
    """A Reply-To override must hold valid addresses."""
    assert [expected] == headlines(good_message(headers={"Reply-To": reply_to}).problems())


def test_a_reply_to_with_an_international_domain_is_accepted() -> None:
    """A Reply-To address with a Unicode domain is accepted, as a recipient's is."""
    expected: list[str] = []
    assert expected == good_message(headers={"Reply-To": "Biuro <biuro@żółw.pl>"}).problems()


def test_a_message_at_the_size_limit_is_accepted_and_one_byte_more_is_not() -> None:
    """Bodies (UTF-8 bytes) plus attachments may reach ``max_bytes`` but not exceed it."""
    message = good_message(
        body_text="ż" * 10,  # 20 bytes in UTF-8
        body_html="<p>",  # 3 bytes
        attachments=(Attachment("a.bin", b"x" * 77),),
    )
    expected: list[str] = []
    assert expected == message.problems(max_bytes=100)
    expected = ["message is 100 bytes (bodies and attachments), above the 99 limit"]
    assert expected == message.problems(max_bytes=99)


def test_the_default_size_limit_is_the_settings_default() -> None:
    """Without ``max_bytes`` the limit is the default of ``MAILWORKER_MAX_MESSAGE_BYTES``."""
    expected = Settings.model_fields["max_message_bytes"].default
    assert expected == DEFAULT_MAX_MESSAGE_BYTES


@pytest.mark.parametrize("priority", [-1, 32768])
def test_priority_out_of_range_is_refused(priority: int) -> None:
    """Priority is 0 (default) to 32767, higher first; nothing negative."""
    expected = [f"priority must be a whole number from 0 to 32767, not {priority}"]
    assert expected == good_message(priority=priority).problems()


@pytest.mark.parametrize("hours", [0, -1])
def test_expiry_not_after_the_start_is_refused(hours: int) -> None:
    """A message that expires before (or when) it may be sent could never be sent."""
    message = good_message(expires_at=NOON + timedelta(hours=hours))
    expected = ["expires_at must be later than not_before"]
    assert expected == message.problems()


def test_times_without_a_time_zone_are_refused() -> None:
    """A naive datetime is ambiguous; every time must carry its zone."""
    message = good_message(not_before=datetime(2026, 12, 1, 8), expires_at=None)
    expected = ["not_before must carry a time zone (e.g. datetime.now(UTC))"]
    assert expected == message.problems()


def test_unknown_kind_is_refused() -> None:
    """Kind is ``notification`` or ``test``."""
    expected = ["kind 'newsletter' is not one of: notification, test"]
    assert expected == good_message(kind="newsletter").problems()


def test_empty_profile_and_idempotency_key_are_refused() -> None:
    """An empty string is neither an account name nor a key; ``None`` means 'none given'."""
    expected = [
        "profile must be an account name, or None for the default profile",
        "idempotency_key must be non-empty text without NUL, or None",
    ]
    assert expected == good_message(profile="", idempotency_key="").problems()


@pytest.mark.parametrize("filename", ["", "   "])
def test_an_attachment_needs_a_file_name(filename: str) -> None:
    """Attachments are numbered from 1 in the problem, as a person counts."""
    message = good_message(attachments=(PDF, Attachment(filename, b"x", "text/plain")))
    expected = ["attachment 2 has an empty file name"]
    assert expected == message.problems()


def test_an_attachment_name_with_a_line_break_is_refused() -> None:
    """The file name goes into a MIME header, so line breaks are refused."""
    message = good_message(attachments=(Attachment("a\r\nb.pdf", b"x"),))
    expected = ["attachment 1 name 'a\\r\\nb.pdf' has a line break or NUL"]
    assert expected == message.problems()


@pytest.mark.parametrize("content_type", ["pdf", "text/plain; charset=utf-8", "a/b\r\nX: y"])
def test_an_attachment_content_type_is_type_slash_subtype(content_type: str) -> None:
    """Content types are ``type/subtype`` with no parameters."""
    message = good_message(attachments=(Attachment("a.txt", b"x", content_type),))
    expected = [f"attachment 1 content type {content_type!r} is not like type/subtype"]
    assert expected == message.problems()


def test_every_problem_is_reported_at_once() -> None:
    """One call names all problems, so a caller fixes everything in one go."""
    message = good_message(to=(), cc=(), bcc=(), subject="a\nb", priority=-1, kind="x")
    with pytest.raises(InvalidMessage) as raised:
        message.check()
    expected = [
        "no recipients: give at least one address in to, cc or bcc",
        "subject contains a line break or NUL character",
        "kind 'x' is not one of: notification, test",
        "priority must be a whole number from 0 to 32767, not -1",
    ]
    assert expected == raised.value.problems
    assert "; ".join(expected) == str(raised.value)


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("faktura.pdf", "application/pdf"),
        ("Raport.CSV", "text/csv"),
        ("zdjęcie.png", "image/png"),
        ("bez-rozszerzenia", "application/octet-stream"),
    ],
)
def test_attachment_content_type_is_guessed_from_the_name(filename: str, content_type: str) -> None:
    """Without a content type one is guessed from the file name; unknown is octet-stream."""
    assert content_type == Attachment(filename, b"x").content_type


def test_a_given_content_type_is_kept() -> None:
    """An explicit content type wins over the guess."""
    expected = "application/x-custom"
    assert expected == Attachment("a.pdf", b"x", expected).content_type


def test_attachment_repr_leaves_out_the_content() -> None:
    """A logged attachment shows its name and type, never its (possibly large) bytes."""
    expected = "Attachment(filename='a.pdf', content_type='application/pdf')"
    assert expected == repr(Attachment("a.pdf", b"secret bytes"))


def test_the_row_uses_the_outbox_column_names() -> None:
    """Every key of the stored row is a column of ``mail.outbox`` (the contract's names)."""
    row = good_message().outbox_row()
    assert set(row) <= set(outbox.c.keys())
    expected = ["jan.kowalski@example.pl"]
    assert expected == row["to_addrs"]
    expected_headers = {"X-Order-Id": "1042", "Reply-To": "Dział obsługi <obsluga@example.pl>"}
    assert expected_headers == row["headers"]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(9999, 12, 31, tzinfo=UTC),
        datetime(2200, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, tzinfo=UTC),
    ],
)
def test_schedule_outside_the_years_a_worker_holds_is_refused(moment: datetime) -> None:
    """A not_before or expires_at the database would refuse is named before the insert."""
    message = OutboxMessage(to=("anna@example.com",), not_before=moment, expires_at=moment)
    expected = [
        f"{name} must lie in the years 1970 to 2199, not {moment.isoformat()}"
        for name in ("not_before", "expires_at")
    ]
    assert expected == [p for p in message.problems() if "years" in p]
