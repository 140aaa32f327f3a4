"""worker.mime: every message is parsed back with the email package and checked field by field."""

# SIM300: the house style writes asserts as ``expected == actual``, which SIM300 calls Yoda.
# RUF001: the en dash in Polish subjects and file names is the character under test.

from __future__ import annotations

import email
import email.policy
import random
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX

from worker.errors import MailWorkerError
from worker.mime import (
    MessageBuildError,
    MessageContent,
    OutgoingAttachment,
    RenderedMessage,
    Sender,
    render,
)

SENDER = Sender(
    address="jankowalski@wp.pl", display_name="Comarch DMS - powiadomienia", reply_to=None
)
POLISH_SUBJECT = "Nowy dokument do zatwierdzenia: faktura zakupowa – Zażółć Gęślą Jaźń"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
BREAKS = ["\r\n", "\n", "\r", "\0", "\r\n\r\n", "\u2028", "\x85"]
ROOT_KEYS = [
    "Date",
    "From",
    "To",
    "Subject",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
]


def _content(**changes: Any) -> MessageContent:
    fields: dict[str, Any] = {
        "to": ["anna.nowak@firma.pl"],
        "cc": [],
        "bcc": [],
        "subject": "Nowy dokument",
        "body_text": "Dzień dobry,\nw systemie czeka dokument.\n",
        "body_html": None,
        "headers": {},
        "message_id": "<0b7f1a8e-3c2d-4f5a-9b6e-1d2c3b4a5f6e@wp.pl>",
        "attachments": [],
    }
    return MessageContent(**{**fields, **changes})


def _sender(**changes: Any) -> Sender:
    fields: dict[str, Any] = {
        "address": SENDER.address,
        "display_name": SENDER.display_name,
        "reply_to": SENDER.reply_to,
    }
    return Sender(**{**fields, **changes})


def _parse(rendered: RenderedMessage) -> EmailMessage:
    return email.message_from_bytes(rendered.data, policy=email.policy.default)


def _render(sender: Sender = SENDER, **changes: Any) -> EmailMessage:
    return _parse(render(sender, _content(**changes)))


def _pdf(filename: str = "Faktura – zażółć.pdf") -> OutgoingAttachment:
    return OutgoingAttachment(filename=filename, content_type="application/pdf", content=PDF)


def _only_attachment(message: EmailMessage) -> EmailMessage:
    (attachment,) = message.iter_attachments()
    assert isinstance(attachment, EmailMessage)
    return attachment


def _text(part: MIMEPart) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def _raw_header(data: bytes, name: str) -> str:
    """The unfolded value of header ``name`` as written, before any decoding."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    (line,) = (line for line in head.split("\r\n") if line.startswith(f"{name}: "))
    return line.removeprefix(f"{name}: ")


# --- Sender and recipients ---------------------------------------------------------------


def test_from_shows_the_polish_display_name_and_the_address() -> None:
    """From carries the profile's Polish display name and its outgoing address."""
    message = _render(_sender(display_name="Zażółć – powiadomienia"))
    (mailbox,) = message["From"].addresses
    expected = ("Zażółć – powiadomienia", "jankowalski@wp.pl")
    assert expected == (mailbox.display_name, mailbox.addr_spec)


def test_from_shows_the_plain_display_name_unencoded() -> None:
    """An ASCII display name is written as it is, not as an encoded word."""
    rendered = render(SENDER, _content())
    expected = "Comarch DMS - powiadomienia <jankowalski@wp.pl>"
    assert expected == _raw_header(rendered.data, "From")


@pytest.mark.parametrize(
    "display_name",
    ["Kowalski, Jan", 'Dział "Kadry" <HR>', "a\\b; c@d", "Zażółć, gęślą (jaźń) <x@y>"],
)
def test_display_names_with_specials_round_trip(display_name: str) -> None:
    """Commas, quotes, brackets and backslashes in a display name are quoted or encoded."""
    (mailbox,) = _render(_sender(display_name=display_name))["From"].addresses
    assert (display_name, "jankowalski@wp.pl") == (mailbox.display_name, mailbox.addr_spec)


def test_long_polish_display_name_decodes_per_rfc_2047() -> None:
    """A display name too long for one encoded word decodes back whole (RFC 2047 decoder).

    Python 3.11's own address parser puts a space between adjacent encoded words of a
    display name, against RFC 2047 6.2, so the standard decoder is the judge here.
    """
    display_name = "Comarch DMS – powiadomienia o dokumentach do zatwierdzenia: zażółć gęślą jaźń"
    rendered = render(_sender(display_name=display_name), _content())
    phrase = _raw_header(rendered.data, "From").removesuffix(" <jankowalski@wp.pl>")
    assert display_name == str(make_header(decode_header(phrase)))


def test_reply_to_comes_from_the_profile() -> None:
    """The profile's Reply-To is written as the Reply-To header."""
    message = _render(_sender(reply_to="biuro@wp.pl"))
    assert ["biuro@wp.pl"] == [mailbox.addr_spec for mailbox in message["Reply-To"].addresses]


def test_no_reply_to_without_one_in_the_profile() -> None:
    """Without a profile Reply-To (or an empty one) the message has no Reply-To header."""
    message = _render(_sender(reply_to="  "))
    assert None is message["Reply-To"]


def test_row_reply_to_replaces_the_profile_reply_to() -> None:
    """A Reply-To among the row's extra headers replaces the profile's, named and Polish."""
    message = _render(
        _sender(reply_to="biuro@wp.pl"), headers={"reply-to": "Dział Kadr <kadry@firma.pl>"}
    )
    mailboxes = [(box.display_name, box.addr_spec) for box in message["Reply-To"].addresses]
    assert [("Dział Kadr", "kadry@firma.pl")] == mailboxes
    assert 1 == len(message.get_all("Reply-To", []))


def test_to_and_cc_list_their_addresses() -> None:
    """To and Cc list the row's addresses in the row's order."""
    message = _render(to=["a@firma.pl", "b@firma.pl"], cc=["c@firma.pl"])
    to = [mailbox.addr_spec for mailbox in message["To"].addresses]
    cc = [mailbox.addr_spec for mailbox in message["Cc"].addresses]
    assert (["a@firma.pl", "b@firma.pl"], ["c@firma.pl"]) == (to, cc)


def test_bcc_is_in_the_envelope_only() -> None:
    """Bcc addresses are envelope recipients but never a header."""
    rendered = render(SENDER, _content(bcc=["tajny@firma.pl"]))
    message = _parse(rendered)
    assert ["anna.nowak@firma.pl", "tajny@firma.pl"] == rendered.recipients
    assert None is message["Bcc"]
    assert -1 == rendered.data.find(b"tajny")


def test_message_without_to_says_undisclosed_recipients() -> None:
    """With only Bcc recipients the To header is the empty undisclosed-recipients group."""
    rendered = render(SENDER, _content(to=[], bcc=["tajny@firma.pl"]))
    assert "undisclosed-recipients:;" == _raw_header(rendered.data, "To")


def test_envelope_sender_is_the_profile_address() -> None:
    """MAIL FROM is the profile's outgoing address."""
    assert "jankowalski@wp.pl" == render(SENDER, _content()).sender


def test_duplicate_recipients_are_sent_once() -> None:
    """To, Cc and Bcc repeats (any letter case) become one recipient each, first order kept."""
    rendered = render(
        SENDER,
        _content(to=["a@firma.pl", "B@firma.pl"], cc=["A@FIRMA.pl"], bcc=["b@firma.pl", "c@x.pl"]),
    )
    assert ["a@firma.pl", "B@firma.pl", "c@x.pl"] == rendered.recipients


def test_display_names_go_into_to_and_cc_and_bare_addresses_into_the_envelope() -> None:
    """``Name <address>`` entries: the header shows each name with its address, RCPT TO gets
    the address alone; quoted names with commas and quotes come back as written."""
    rendered = render(
        SENDER,
        _content(
            to=["Jan Kowalski <jan@firma.pl>", '"Kowalski, Jan" <jk@firma.pl>'],
            cc=['"Dział \\"Kadry\\"" <kadry@firma.pl>', "<anna@firma.pl>"],
        ),
    )
    message = _parse(rendered)
    to = [(box.display_name, box.addr_spec) for box in message["To"].addresses]
    cc = [(box.display_name, box.addr_spec) for box in message["Cc"].addresses]
    expected = (
        [("Jan Kowalski", "jan@firma.pl"), ("Kowalski, Jan", "jk@firma.pl")],
        [('Dział "Kadry"', "kadry@firma.pl"), ("", "anna@firma.pl")],
        ["jan@firma.pl", "jk@firma.pl", "kadry@firma.pl", "anna@firma.pl"],
    )
    assert expected == (to, cc, rendered.recipients)


def test_plain_recipient_display_name_is_written_as_it_is() -> None:
    """An ASCII display name in To is written plainly, as mail programs write it."""
    rendered = render(SENDER, _content(to=["Jan Kowalski <jan@firma.pl>"]))
    assert "Jan Kowalski <jan@firma.pl>" == _raw_header(rendered.data, "To")


def test_polish_recipient_display_name_is_encoded_and_decodes_back() -> None:
    """A Polish display name in To is RFC 2047 words (the message stays 7-bit) that decode
    back whole, however long."""
    name = "Zażółć Gęślą Jaźń – dział kadr i płac, oddział w Gdańsku, pokój 12"
    rendered = render(SENDER, _content(to=[f'"{name}" <kadry@firma.pl>']))
    phrase = _raw_header(rendered.data, "To").removesuffix(" <kadry@firma.pl>")
    assert (name, True) == (str(make_header(decode_header(phrase))), rendered.data.isascii())


def test_bcc_display_name_is_in_no_header() -> None:
    """A Bcc entry with a display name puts its address into the envelope and nothing, not
    even the name, into the message."""
    rendered = render(SENDER, _content(bcc=["Tajny Odbiorca <tajny@firma.pl>"]))
    found = (rendered.data.find(b"Tajny"), rendered.data.find(b"tajny"))
    assert (["anna.nowak@firma.pl", "tajny@firma.pl"], (-1, -1)) == (rendered.recipients, found)


def test_one_address_under_two_display_names_is_one_envelope_recipient() -> None:
    """The same address with two display names (and another letter case) is one RCPT."""
    rendered = render(
        SENDER, _content(to=["Jan <jan@firma.pl>", "anna.nowak@firma.pl"], cc=["J. <JAN@firma.pl>"])
    )
    assert ["jan@firma.pl", "anna.nowak@firma.pl"] == rendered.recipients


def test_international_domain_is_sent_in_its_xn_form() -> None:
    """A Unicode domain (any letter case) becomes its IDNA 2008 ASCII form in the envelope
    and the header; the message stays ASCII and needs no SMTPUTF8."""
    rendered = render(SENDER, _content(to=["Anna <anna@Zażółć.PL>"], bcc=["b@przykład.pl"]))
    expected = (
        ["anna@xn--za-6ja4f8n1l.pl", "b@xn--przykad-rjb.pl"],
        "Anna <anna@xn--za-6ja4f8n1l.pl>",
        None,
        True,
    )
    actual = (
        rendered.recipients,
        _raw_header(rendered.data, "To"),
        rendered.utf8_address,
        rendered.data.isascii(),
    )
    assert expected == actual


def test_ascii_message_needs_no_smtputf8() -> None:
    """A message whose addresses are ASCII asks for no MAIL FROM parameter."""
    rendered = render(SENDER, _content(to=["Zażółć <a@firma.pl>"], subject="Zażółć"))
    assert (None, ()) == (rendered.utf8_address, rendered.mail_options)


def test_non_ascii_local_part_makes_a_utf8_message_that_needs_smtputf8() -> None:
    """``zażółć@example.pl``: the address is UTF-8 in the envelope and in To (RFC 6532), the
    display name still an encoded word, every other line ASCII; SMTPUTF8 is asked for."""
    rendered = render(
        SENDER, _content(to=["Zażółć <zażółć@Przykład.pl>"], cc=["b@firma.pl"], subject="Ż")
    )
    head, body = rendered.data.split(b"\r\n\r\n", 1)
    utf8_lines = [line for line in head.split(b"\r\n") if not line.isascii()]
    to = "=?utf-8?b?WmHFvMOzxYLEhw==?= <zażółć@xn--przykad-rjb.pl>"
    expected = (
        ["zażółć@xn--przykad-rjb.pl", "b@firma.pl"],
        "zażółć@Przykład.pl",
        ("SMTPUTF8",),
        [f"To: {to}".encode()],
        True,
    )
    actual = (
        rendered.recipients,
        rendered.utf8_address,
        rendered.mail_options,
        utf8_lines,
        body.isascii(),
    )
    assert expected == actual


@pytest.mark.parametrize(
    ("sender", "headers"),
    [
        (_sender(address="zażółć@wp.pl"), {}),
        (_sender(reply_to="Biuro <biuro.żółw@wp.pl>"), {}),
        (SENDER, {"Reply-To": "Biuro <biuro.żółw@wp.pl>, a@firma.pl"}),
    ],
    ids=["sender", "profile reply-to", "row reply-to"],
)
def test_non_ascii_local_part_of_sender_or_reply_to_needs_smtputf8(
    sender: Sender, headers: dict[str, str]
) -> None:
    """Not only recipients: a sender or Reply-To address with a non-ASCII local part is UTF-8
    in its header, so the message needs SMTPUTF8 too."""
    rendered = render(sender, _content(headers=headers))
    assert (True, False) == (rendered.utf8_address is not None, rendered.data.isascii())


def test_row_reply_to_with_an_international_domain_is_sent_in_its_xn_form() -> None:
    """A Reply-To address with a Unicode domain gets its xn-- form, like a recipient's."""
    rendered = render(SENDER, _content(headers={"Reply-To": "Biuro <biuro@żółw.pl>"}))
    assert "Biuro <biuro@xn--w-uga1v8h.pl>" == _raw_header(rendered.data, "Reply-To")


def test_message_without_recipients_is_refused() -> None:
    """No To, Cc or Bcc address is a MessageBuildError."""
    with pytest.raises(MessageBuildError, match="no recipients"):
        render(SENDER, _content(to=[]))


@pytest.mark.parametrize(
    "address",
    [
        "",
        "anna",
        "anna@",
        "@firma.pl",
        "anna nowak@firma.pl",
        "a@b.pl\r\nBcc: x",
        "Anna Nowak <anna@>",
        "Nowak, Anna <anna@firma.pl>",
        "Anna <anna@firma.pl",
        "anna@zażółć..pl",
    ],
)
def test_invalid_recipient_is_refused(address: str) -> None:
    """A recipient that is not an e-mail address is a MessageBuildError naming the field."""
    with pytest.raises(MessageBuildError, match="Cc address"):
        render(SENDER, _content(cc=[address]))


@pytest.mark.parametrize("address", ["", "   "])
def test_empty_recipient_is_refused_in_words(address: str) -> None:
    """An empty address says so, not what the parser tripped over on the way."""
    with pytest.raises(MessageBuildError) as raised:
        render(SENDER, _content(bcc=["anna@firma.pl", address]))
    assert "Bcc address is empty" == str(raised.value)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "Nowak, Anna <anna@firma.pl>",
            "Cc address 'Nowak, Anna <anna@firma.pl>' is not valid: it has ',' outside double"
            " quotes: an entry holds one address, and a display name with ',' is written in"
            " double quotes",
        ),
        (
            "anna@zażółć..pl",
            "Cc address 'anna@zażółć..pl' is not valid: its domain 'zażółć..pl' is not a valid"
            " international domain name (IDNA 2008: Empty Label)",
        ),
        (
            "zły adres@",
            "Cc address 'zły adres@' is not valid: the part before the @ contains a space;"
            " nothing comes after the @",
        ),
        (
            "Anna\u0085Nowak <anna@firma.pl>",
            "Cc address 'Anna\\x85Nowak <anna@firma.pl>' contains a control character",
        ),
    ],
)
def test_a_bad_entry_is_refused_saying_what_is_wrong(entry: str, expected: str) -> None:
    """A row's entry that cannot be sent says why: two addresses, a domain IDNA refuses (by
    name), a space, a control character even in the display name."""
    with pytest.raises(MessageBuildError) as raised:
        render(SENDER, _content(cc=[entry]))
    assert expected == str(raised.value)


def test_invalid_sender_address_is_refused() -> None:
    """A profile address that is not an e-mail address is a MessageBuildError."""
    with pytest.raises(MessageBuildError, match="sender address"):
        render(_sender(address="not an address"), _content())


@pytest.mark.parametrize(
    "address",
    [
        '"jan\tkowalski"@example.pl',  # TAB: the email package accepts it in a quoted local part
        '"jan\x01"@example.pl',
        "jan\x1f@example.pl",
        '"jan\x7f"@example.pl',  # DEL
        '"jan\x85"@example.pl',  # C1: a control character, not a missing SMTPUTF8
    ],
)
def test_address_with_a_control_character_is_refused_in_words(address: str) -> None:
    """A control character (C0 with TAB, DEL, C1) in an address is refused, naming the field
    and the address with its escapes: no SMTP command may carry it."""
    with pytest.raises(MessageBuildError) as raised:
        render(SENDER, _content(bcc=["anna@firma.pl", address]))
    assert f"Bcc address {address!r} contains a control character" == str(raised.value)


@pytest.mark.parametrize("address", ["jan@[192.0.2.<]", 'jan@["]', "jan@[>]"])
def test_domain_literal_that_smtp_cannot_carry_is_refused(address: str) -> None:
    """A domain literal with '"', '<' or '>' is refused when the message is built, not by
    aiosmtplib when it is sent."""
    with pytest.raises(MessageBuildError) as raised:
        render(SENDER, _content(to=[address]))
    expected = f"To address {address!r} is not valid: a domain literal may not contain"
    assert expected == str(raised.value)[: len(expected)]


@pytest.mark.parametrize("address", ["jan@[", "jan@[192.0.2.1"])
def test_unterminated_domain_literal_is_refused(address: str) -> None:
    """A broken domain literal is a MessageBuildError, not the email parser's AttributeError
    (which the worker took for passing trouble and retried)."""
    with pytest.raises(MessageBuildError, match="Cc address"):
        render(SENDER, _content(cc=[address]))


def test_unterminated_domain_literal_in_a_row_reply_to_is_refused() -> None:
    """The same broken literal in the row's Reply-To is a MessageBuildError too."""
    with pytest.raises(MessageBuildError, match="Reply-To"):
        render(SENDER, _content(headers={"Reply-To": "Jan <jan@[>"}))


@pytest.mark.parametrize(
    "address",
    [
        '"jan kowalski"@example.pl',
        "jan@[192.0.2.1]",
        "jan@[IPv6:2001:db8::1]",
        "Jan@Example.PL",
        '"zażółć jaźń"@example.pl',
    ],
)
def test_unusual_addresses_that_smtp_carries_are_kept(address: str) -> None:
    """A quoted local part with a space and IP address literals stay in the envelope as given."""
    assert [address] == render(SENDER, _content(to=[address])).recipients


def _address_candidates() -> list[str]:
    """Each character up to U+009F (C0, printable ASCII, DEL, C1) where addresses hide them,
    and seeded random strings of specials and control characters."""
    shapes = [
        "jan{c}@example.pl",
        '"jan{c}"@example.pl',
        '"{c}"@example.pl',
        '"ja\\{c}n"@example.pl',
        "jan@exa{c}mple.pl",
        "jan@[192.0.2.{c}]",
        "jan@[{c}]",
        "jan ({c}) @example.pl",
    ]
    candidates = [shape.format(c=chr(code)) for shape in shapes for code in range(0xA0)]
    rnd = random.Random(5321)
    alphabet = [*'a"\\.@[]<>(),;: ', "\t", "\x01", "\x7f", "x.pl"]
    for _ in range(20_000):
        local = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 8)))
        candidates.append(local + rnd.choice(["@x.pl", ""]))
    return candidates


def _international_candidates() -> list[str]:
    """Each character up to U+009F and some Unicode white space and letters, in display names,
    quoted and unquoted non-ASCII local parts and international domains."""
    shapes = [
        "za{c}ż@example.pl",
        '"za{c}ż"@example.pl',
        '"za\\{c}ż"@example.pl',
        "Jan{c} <zaż@example.pl>",
        '"Ja{c}n" <zaż@żółw.pl>',
        "jan@żó{c}łw.pl",
    ]
    characters = [*map(chr, range(0xA0)), "\u00a0", "\u2028", "\u3000", "\u200b", "ż", "😀"]
    return [shape.format(c=char) for shape in shapes for char in characters]


def test_every_address_render_accepts_can_go_into_an_smtp_command() -> None:
    """Whatever address render puts into the envelope, aiosmtplib's own checks let it into
    MAIL FROM and RCPT TO unchanged (UTF-8 exactly when render asks for SMTPUTF8): no
    address is refused, or rewritten, only when the message is sent."""
    unsendable = []
    for candidate in [*_address_candidates(), *_international_candidates()]:
        try:
            rendered = render(SENDER, _content(to=[candidate]))
        except MessageBuildError:
            continue
        [address] = rendered.recipients
        try:
            quoted = quote_address(address)
            command_arg = quoted.encode("utf-8" if rendered.utf8_address else "ascii")
        except ValueError as exc:
            unsendable.append((candidate, str(exc)))
            continue
        if COMMAND_INJECTION_REGEX.search(command_arg):
            unsendable.append((candidate, "a control character on the command line"))
        elif quoted != f"<{address}>":
            unsendable.append((candidate, f"aiosmtplib would send {quoted}"))
    assert [] == unsendable


# --- Subject, identity and extra headers ----------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        POLISH_SUBJECT,
        "Zażółć gęślą jaźń ĄĆĘŁŃÓŚŹŻ",
        "Faktura nr 12/2024",
        "=?utf-8?q?not_an_encoded_word?= ąę",
        'Spacje  podwójne – i ,;:<>"\\ znaki',
    ],
)
def test_subject_round_trips(subject: str) -> None:
    """The subject, Polish or ASCII, parses back exactly as given."""
    assert subject == _render(subject=subject)["Subject"]


@pytest.mark.parametrize(
    "subject",
    [
        "słowo " * 333 + "k",
        "Faktura " * 250,
        "x" * 2000,
        "ż" * 2000,
    ],
)
def test_two_thousand_character_subject_folds_and_parses_back(subject: str) -> None:
    """A 2,000-character subject is folded into short lines and parses back equal."""
    subject = subject.strip()
    rendered = render(SENDER, _content(subject=subject))
    head = rendered.data.split(b"\r\n\r\n", 1)[0]
    assert subject == _parse(rendered)["Subject"]
    assert [] == [line for line in head.split(b"\r\n") if len(line) > 78]


def test_random_header_text_round_trips() -> None:
    """Seeded random Polish, ASCII and special text survives as subject, header and file name."""
    rnd = random.Random(2047)
    alphabet = "abc ABC  ąćęłńóśźżĄŻ–„”.,;:!?()[]<>@\"'\\=_-/%*\t😀日本"
    mismatches = []
    for _ in range(100):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 200))).strip()
        message = _render(subject=text, headers={"X-V": text}, attachments=[_pdf(f"f{text}.pdf")])
        actual = (message["Subject"], message["X-V"], _only_attachment(message).get_filename())
        if actual != (text, text, f"f{text}.pdf"):
            mismatches.append(text)
    assert [] == mismatches


def test_message_id_and_date_are_written() -> None:
    """Message-ID is the row's, Date the given one."""
    date = datetime(2024, 11, 5, 14, 30, 15, tzinfo=timezone(timedelta(hours=1)))
    message = _render(date=date)
    expected = ("<0b7f1a8e-3c2d-4f5a-9b6e-1d2c3b4a5f6e@wp.pl>", date)
    assert expected == (message["Message-ID"], message["Date"].datetime)


def test_naive_date_is_taken_as_utc() -> None:
    """A date without a time zone is written as UTC."""
    message = _render(date=datetime(2024, 11, 5, 14, 30))
    assert datetime(2024, 11, 5, 14, 30, tzinfo=UTC) == message["Date"].datetime


def test_date_defaults_to_now() -> None:
    """Without a date the message is dated at the time of rendering."""
    before = datetime.now(UTC).replace(microsecond=0)
    written = _render()["Date"].datetime
    after = datetime.now(UTC)
    assert (True, True) == (before <= written, written <= after)


def test_mime_version_is_written() -> None:
    """The message declares MIME-Version 1.0."""
    assert "1.0" == _render()["MIME-Version"]


@pytest.mark.parametrize("message_id", ["", "0b7f@wp.pl", "<0b7f>", "<a b@wp.pl>", "<a@b>\nBcc: x"])
def test_malformed_message_id_is_refused(message_id: str) -> None:
    """A Message-ID that is not <left@right> in printable ASCII is a MessageBuildError."""
    with pytest.raises(MessageBuildError, match="Message-ID"):
        render(SENDER, _content(message_id=message_id))


def test_extra_headers_are_written() -> None:
    """The row's extra headers appear with their values, Polish ones decoded back."""
    headers = {"X-Dms-Document": "FV/2024/11/0042", "X-Opis": "Zażółć gęślą jaźń"}
    message = _render(headers=headers)
    assert headers == {name: message[name] for name in headers}


def test_long_url_header_stays_readable() -> None:
    """A long List-Unsubscribe URL is written as given, not as encoded words."""
    value = "<https://dms.example.pl/wypisz?token=" + "a1b2c3d4" * 20 + ">"
    rendered = render(SENDER, _content(headers={"List-Unsubscribe": value}))
    assert value == _raw_header(rendered.data, "List-Unsubscribe")


def test_owned_header_override_names_the_header() -> None:
    """Setting From through the extra headers is refused with a clear text."""
    with pytest.raises(MessageBuildError) as raised:
        render(SENDER, _content(headers={"From": "szef@firma.pl"}))
    assert "extra header 'From' is set by the service and cannot be overridden" == str(raised.value)


@pytest.mark.parametrize(
    "name",
    [
        "sender",
        "TO",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "content-transfer-encoding",
        "Content-Disposition",
    ],
)
def test_owned_headers_cannot_be_overridden(name: str) -> None:
    """Every header the service sets, in any letter case, is refused as an extra header."""
    with pytest.raises(MessageBuildError, match="set by the service"):
        render(SENDER, _content(headers={name: "x"}))


@pytest.mark.parametrize(
    "name", ["", "X Spacja", "X:Dwukropek", "X-Zażółć", "X-A\r\nBcc", "X-Tab\t", "X" * 77]
)
def test_invalid_header_names_are_refused(name: str) -> None:
    """A header name that is not printable ASCII without ':' or spaces is refused."""
    with pytest.raises(MessageBuildError, match="extra header name"):
        render(SENDER, _content(headers={name: "x"}))


def test_non_string_header_value_is_refused() -> None:
    """A jsonb header value that is not a string is a MessageBuildError."""
    with pytest.raises(MessageBuildError, match="must be a string"):
        render(SENDER, _content(headers={"X-Count": 3}))


def test_reply_to_given_twice_in_the_row_is_refused() -> None:
    """Two Reply-To keys differing in letter case are refused, not both written."""
    with pytest.raises(MessageBuildError, match="more than once"):
        render(SENDER, _content(headers={"Reply-To": "a@firma.pl", "reply-to": "b@firma.pl"}))


def test_header_name_given_twice_in_the_row_is_refused() -> None:
    """Two extra headers whose names differ only in letter case are refused."""
    with pytest.raises(MessageBuildError, match="'x-order' is given more than once"):
        render(SENDER, _content(headers={"X-Order": "1", "x-order": "2"}))


def test_invalid_row_reply_to_is_refused() -> None:
    """A row Reply-To that is not an address list is a MessageBuildError."""
    with pytest.raises(MessageBuildError, match="Reply-To"):
        render(SENDER, _content(headers={"Reply-To": "nie adres"}))


def test_build_error_is_a_service_error_and_a_value_error() -> None:
    """MessageBuildError is caught both as MailWorkerError and as ValueError."""
    assert (True, True) == (
        issubclass(MessageBuildError, MailWorkerError),
        issubclass(MessageBuildError, ValueError),
    )


# --- Header injection ---------------------------------------------------------------------


@pytest.mark.parametrize("line_break", BREAKS)
def test_line_break_in_subject_injects_nothing(line_break: str) -> None:
    """A line break in the subject becomes a space; no header is added."""
    message = _render(subject=f"Faktura{line_break}Bcc: ofiara@zlo.pl")
    assert (ROOT_KEYS, "Faktura Bcc: ofiara@zlo.pl") == (list(message.keys()), message["Subject"])


@pytest.mark.parametrize("display_name", ["DMS", "Zażółć"])
@pytest.mark.parametrize("line_break", BREAKS)
def test_line_break_in_display_name_injects_nothing(display_name: str, line_break: str) -> None:
    """A line break in the display name becomes a space; no header is added."""
    message = _render(_sender(display_name=f"{display_name}{line_break}Bcc: ofiara@zlo.pl"))
    (mailbox,) = message["From"].addresses
    expected = (ROOT_KEYS, f"{display_name} Bcc: ofiara@zlo.pl")
    assert expected == (list(message.keys()), mailbox.display_name)


@pytest.mark.parametrize("value", ["ok", "zażółć"])
@pytest.mark.parametrize("line_break", BREAKS)
def test_line_break_in_extra_header_injects_nothing(value: str, line_break: str) -> None:
    """A line break in an extra header's value becomes a space; no header is added."""
    message = _render(headers={"X-Note": f"{value}{line_break}Bcc: ofiara@zlo.pl"})
    expected_keys = [*ROOT_KEYS[:5], "X-Note", *ROOT_KEYS[5:]]
    expected = (expected_keys, f"{value} Bcc: ofiara@zlo.pl")
    assert expected == (list(message.keys()), message["X-Note"])


@pytest.mark.parametrize("name", ["faktura.pdf", "Faktura – zażółć.pdf"])
@pytest.mark.parametrize("line_break", BREAKS)
def test_line_break_in_filename_injects_nothing(name: str, line_break: str) -> None:
    """A line break in a file name becomes a space; the part gets no extra header."""
    attachment = _only_attachment(_render(attachments=[_pdf(f"{name}{line_break}Bcc: x@zlo.pl")]))
    keys = ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition"]
    assert (keys, f"{name} Bcc: x@zlo.pl") == (list(attachment.keys()), attachment.get_filename())


@pytest.mark.parametrize("line_break", BREAKS)
def test_line_break_in_reply_to_injects_nothing(line_break: str) -> None:
    """A line break in the profile's Reply-To becomes a space; no header is added."""
    message = _render(_sender(reply_to=f"Dział{line_break}Kadr <kadry@firma.pl>"))
    (mailbox,) = message["Reply-To"].addresses
    expected_keys = [*ROOT_KEYS[:2], "Reply-To", *ROOT_KEYS[2:]]
    assert (expected_keys, "Dział Kadr") == (list(message.keys()), mailbox.display_name)


def test_reply_to_with_an_injected_header_is_refused() -> None:
    """A Reply-To carrying a header after a line break is, on one line, no address list."""
    with pytest.raises(MessageBuildError, match="Reply-To"):
        render(_sender(reply_to="biuro@wp.pl\r\nBcc: ofiara@zlo.pl"), _content())


# --- Bodies and attachments ---------------------------------------------------------------


def test_text_body_round_trips() -> None:
    """A Polish text body is a single text/plain part that decodes back."""
    message = _render(body_text="Zażółć gęślą jaźń.\nDruga linia.")
    assert ("text/plain", "Zażółć gęślą jaźń.\nDruga linia.\n") == (
        message.get_content_type(),
        _text(message),
    )


def test_text_and_html_are_alternatives() -> None:
    """With HTML the body is multipart/alternative: the text first, then the HTML."""
    message = _render(body_text="Zażółć", body_html="<p>Zażółć</p>")
    parts = [(part.get_content_type(), _text(part)) for part in message.iter_parts()]
    assert "multipart/alternative" == message.get_content_type()
    assert [("text/plain", "Zażółć\n"), ("text/html", "<p>Zażółć</p>\n")] == parts


def test_html_without_text_is_sent_alone() -> None:
    """An empty text body with HTML sends a single text/html part."""
    message = _render(body_text="", body_html="<p>Zażółć</p>")
    assert ("text/html", "<p>Zażółć</p>\n") == (message.get_content_type(), _text(message))


def test_pdf_attachment_is_byte_exact_with_its_type_and_polish_name() -> None:
    """A PDF arrives byte for byte as application/pdf named with its Polish file name."""
    message = _render(body_html="<p>x</p>", attachments=[_pdf()])
    attachment = _only_attachment(message)
    expected = ("multipart/mixed", "application/pdf", "Faktura – zażółć.pdf", PDF)
    actual = (
        message.get_content_type(),
        attachment.get_content_type(),
        attachment.get_filename(),
        attachment.get_content(),
    )
    assert expected == actual


def test_non_ascii_filename_uses_rfc_2231() -> None:
    """A non-ASCII file name is written as an RFC 2231 filename*= parameter."""
    data = render(SENDER, _content(attachments=[_pdf()])).data
    lines = [line for line in data.split(b"\r\n") if b"filename" in line]
    assert [b" filename*=utf-8''Faktura%20%E2%80%93%20za%C5%BC%C3%B3%C5%82%C4%87.pdf"] == lines


@pytest.mark.parametrize(
    "filename",
    ["Raport " * 30 + ".pdf", "Sprawozdanie – " + "zażółć " * 40 + ".pdf", 'a"b\\c;d.pdf'],
)
def test_long_and_odd_filenames_round_trip(filename: str) -> None:
    """Long ASCII or Polish file names and quotes or backslashes in them parse back equal."""
    attachment = _only_attachment(_render(attachments=[_pdf(filename.strip())]))
    assert filename.strip() == attachment.get_filename()


def test_several_attachments_keep_their_order() -> None:
    """Attachments follow the body in the row's order."""
    files = [
        OutgoingAttachment(filename=f"{n}.bin", content_type="application/x-a", content=bytes([n]))
        for n in range(3)
    ]
    message = _render(attachments=files)
    names = [part.get_filename() for part in message.iter_attachments()]
    assert ["0.bin", "1.bin", "2.bin"] == names


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/pdf", "application/pdf"),
        ("Application/PDF", "application/pdf"),
        ("application/vnd.ms-excel", "application/vnd.ms-excel"),
        ("pdf", "application/octet-stream"),
        ("application/pdf/x", "application/octet-stream"),
        ("appli cation/pdf", "application/octet-stream"),
        ("multipart/mixed", "application/octet-stream"),
        ("message/rfc822", "application/octet-stream"),
        ("text/plain\r\nBcc: x@y.pl", "application/octet-stream"),
    ],
)
def test_attachment_content_type(content_type: str, expected: str) -> None:
    """The attachment keeps a well-formed type; a malformed one becomes octet-stream."""
    file = OutgoingAttachment(filename="f", content_type=content_type, content=b"data")
    attachment = _only_attachment(_render(attachments=[file]))
    assert (expected, b"data") == (attachment.get_content_type(), attachment.get_content())


def test_attachment_content_type_parameters_are_kept() -> None:
    """Parameters such as charset or method stay on the attachment's content type."""
    file = OutgoingAttachment(
        filename="zaproszenie.ics",
        content_type="text/calendar; method=REQUEST; charset=utf-8",
        content=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    )
    attachment = _only_attachment(_render(attachments=[file]))
    params = (attachment.get_param("method"), attachment.get_content_charset())
    assert ("text/calendar", ("REQUEST", "utf-8")) == (attachment.get_content_type(), params)


def test_body_line_endings_become_crlf_and_nul_is_dropped() -> None:
    """LF, CR and CRLF in a body are written as CRLF; NUL characters are removed."""
    data = render(SENDER, _content(body_text="a\nb\r\nc\rd\0e")).data
    assert b"a\r\nb\r\nc\r\nde\r\n" == data.split(b"\r\n\r\n", 1)[1]


def test_ascii_body_with_short_lines_is_7bit() -> None:
    """Plain ASCII text with short lines goes as 7bit, readable as it is."""
    message = _render(body_text="Hello.\n")
    assert "7bit" == message["Content-Transfer-Encoding"]


def test_polish_body_is_quoted_printable() -> None:
    """Mostly-ASCII Polish text goes as quoted-printable, the shorter encoding for it."""
    message = _render(body_text="Dzień dobry, w systemie pojawił się nowy dokument.")
    assert "quoted-printable" == message["Content-Transfer-Encoding"]


def test_mostly_non_latin_body_is_base64() -> None:
    """Text that is mostly multi-byte characters goes as base64, the shorter encoding for it."""
    body = "Добрый день, документ ждёт утверждения.\n" * 5
    message = _render(body_text=body)
    assert ("base64", body) == (message["Content-Transfer-Encoding"], _text(message))


def test_long_body_line_is_encoded_and_decodes_back() -> None:
    """A 5,000-character ASCII line is encoded into short lines and decodes back whole."""
    body = "x" * 5000 + "\n"
    message = _render(body_text=body)
    assert ("quoted-printable", body) == (message["Content-Transfer-Encoding"], _text(message))


def test_every_line_is_crlf_terminated_and_at_most_998_octets() -> None:
    """Long subject, headers, names, body lines and attachments: all lines ≤ 998, all CRLF."""
    rendered = render(
        _sender(display_name="Powiadomienia " * 100, reply_to="biuro@wp.pl"),
        _content(
            to=[f"odbiorca{n}@firma.pl" for n in range(100)],
            cc=[f'"osoba {n}"@firma.pl' for n in range(50)],
            subject="zażółć " * 400,
            body_text="a" * 5000 + "\nb" + "ż" * 3000,
            body_html="<p>" + "x" * 10000 + "</p>",
            headers={"X-Long": "y" * 3000, "X-Words": "słowo " * 600},
            attachments=[_pdf("ż" * 300 + ".pdf"), _pdf("a" * 2000 + ".pdf")],
        ),
    )
    lines = rendered.data.split(b"\r\n")
    assert b"" == lines[-1]
    assert [] == [line[:60] for line in lines if len(line) > 998 or b"\r" in line or b"\n" in line]


def test_output_is_seven_bit() -> None:
    """The message is ASCII throughout, so no 8BITMIME or SMTPUTF8 is needed; Polish display
    names and international domains of recipients change nothing."""
    rendered = render(
        _sender(display_name="Zażółć"),
        _content(
            to=["Zażółć Gęślą <anna@zażółć.pl>"],
            subject="Zażółć",
            body_text="Zażółć",
            body_html="<b>ż</b>",
            attachments=[_pdf()],
        ),
    )
    assert [] == [line for line in rendered.data.split(b"\r\n") if not line.isascii()]
