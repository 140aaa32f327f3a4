"""worker.mime under arbitrary Unicode: property tests that parse every message back."""

# SIM300: the house style writes asserts as ``expected == actual``, which SIM300 calls Yoda.
# RUF001: the Polish letters in the strategies are the characters under test.

from __future__ import annotations

import dataclasses
import email
import email.header
import email.policy
import email.utils
import re
import unicodedata
from dataclasses import dataclass, replace
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from worker.mime import (
    MessageBuildError,
    MessageContent,
    OutgoingAttachment,
    RenderedMessage,
    Sender,
    render,
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,  # the first examples pay for imports and caches; time is not the property
    database=None,  # no .hypothesis directory in the repository; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow],
)
POLISH = "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"
# Characters that make mail break: line breaks of every kind, NUL, TAB, quoting and the
# characters of encoded words and parameters.
TRICKY = "\r\n\0\t\x0b\x0c\x1c\x1d\x1e\x7f\x85\x9f\u2028\u2029 \"'\\;=?<>()@,:%"
ADDRESS = "jankowalski@wp.pl"
MESSAGE_ID = "<0b7f1a8e-3c2d-4f5a-9b6e-1d2c3b4a5f6e@wp.pl>"
EXTRA_NAME = "X-Tag"
ATTACHMENT_BYTES = b"%PDF-1.7\n" + bytes(range(256)) + b"\n%%EOF\n"
# Long enough to be written as two encoded words, split between "gęś" and "lą".
SPLIT_DISPLAY_NAME = "Powiadomienia systemu – zażółć gęślą jaźń, dział kadr i płac"
PART_KEYS = {"Content-Type", "Content-Transfer-Encoding", "Content-Disposition"}
# Cc entries as people write them: bare, with a display name, quoted, Polish, IDNA.
CC_ENTRIES = [
    "a@firma.pl",
    "b@firma.pl",
    "Anna Nowak <c@firma.pl>",
    '"Kowalski, Jan" <d@firma.pl>',
    "Zażółć Gęślą <e@zażółć.pl>",
]
RECIPIENT = "anna.nowak@firma.pl"
HIDDEN = "tajny@firma.pl"

_characters = st.one_of(
    st.sampled_from(POLISH + TRICKY + "abcXYZ019 -."),
    st.characters(exclude_categories=("Cs",)),  # PostgreSQL text cannot hold surrogates
)
_short_text = st.text(alphabet=_characters, max_size=120)
# Thousands of characters without a line break: a piece repeated, cheaper than drawing each.
_long_text = st.builds(
    lambda piece, times: piece * times,
    st.text(alphabet=_characters, min_size=1, max_size=12),
    st.integers(min_value=100, max_value=600),
)
texts = st.one_of(_short_text, _long_text, st.builds(str.__add__, _short_text, _long_text))


@dataclass(frozen=True)
class Case:
    """One generated input: the free-text fields and which optional headers are present."""

    subject: str
    display_name: str
    extra_value: str
    filename: str | None
    body_text: str
    body_html: str | None
    reply_to: str | None
    cc: tuple[str, ...]

    def sender(self) -> Sender:
        return Sender(address=ADDRESS, display_name=self.display_name, reply_to=self.reply_to)

    def content(self) -> MessageContent:
        attachments = []
        if self.filename is not None:
            attachments.append(
                OutgoingAttachment(
                    filename=self.filename,
                    content_type="application/pdf",
                    content=ATTACHMENT_BYTES,
                )
            )
        return MessageContent(
            to=[RECIPIENT],
            cc=list(self.cc),
            bcc=[],
            subject=self.subject,
            body_text=self.body_text,
            body_html=self.body_html,
            headers={EXTRA_NAME: self.extra_value},
            message_id=MESSAGE_ID,
            attachments=attachments,
        )


BASE_CASE = Case(
    subject="Nowy dokument",
    display_name="Powiadomienia",
    extra_value="",
    filename=None,
    body_text="Dzień dobry",
    body_html=None,
    reply_to=None,
    cc=(),
)
cases = st.builds(
    Case,
    subject=texts,
    display_name=texts,
    extra_value=texts,
    filename=st.none() | texts,
    body_text=texts,
    body_html=st.none() | texts,
    reply_to=st.none() | st.just("biuro@wp.pl"),
    cc=st.lists(st.sampled_from(CC_ENTRIES), max_size=3, unique=True).map(tuple),
)


def _is_breaking(char: str) -> bool:
    """Whether the docstring's rule replaces ``char``: a control character or line break.

    Written from the Unicode categories, not the module's regular expression: Cc is C0, DEL
    and C1 (CR, LF, NUL, NEL among them); Zl and Zp are the line and paragraph separators.
    """
    return char != "\t" and unicodedata.category(char) in ("Cc", "Zl", "Zp")


def _sanitised_name(filename: str) -> str:
    """The expected file name: sanitised, then without the quotes and spaces around it."""
    name = _sanitised(filename)
    while name != (unquoted := name.strip('"').strip()):
        name = unquoted
    return name


def _sanitised(value: str) -> str:
    """The expected header value: each run of breaking characters as one space, stripped."""
    out: list[str] = []
    for char in value:
        if not _is_breaking(char):
            out.append(char)
        elif not out or out[-1] != "\0":  # "\0" marks a run already replaced
            out.append("\0")
    return "".join(out).replace("\0", " ").strip()


def _body(text: str) -> str:
    """A body as it should come back: LF line ends, no NUL, ending in a line break."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    return text if text.endswith("\n") else text + "\n"


def _parse(rendered: RenderedMessage) -> EmailMessage:
    return email.message_from_bytes(rendered.data, policy=email.policy.default)


def _decoded(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def _has_text_part(case: Case) -> bool:
    """Whether the text body is sent: always without HTML, with HTML only when not blank."""
    return not case.body_html or bool(case.body_text.strip())


@PROPERTY_SETTINGS
@given(cases)
def test_render_never_raises_for_valid_addresses_and_header_names(case: Case) -> None:
    """Any Unicode in the free-text fields renders: no documented reason to refuse applies.

    The module refuses only bad addresses, Message-IDs, header names and missing recipients;
    all of those are valid here, so not even MessageBuildError may be raised.
    """
    rendered = render(case.sender(), case.content())
    assert ADDRESS == rendered.sender


@PROPERTY_SETTINGS
@given(cases)
def test_output_is_ascii_crlf_lines_of_at_most_998_octets(case: Case) -> None:
    """The bytes are ASCII, every line ends with CRLF and no line is over 998 octets."""
    data = render(case.sender(), case.content()).data
    lines = data.split(b"\r\n")
    bad = [line[:60] for line in lines if len(line) > 998 or b"\r" in line or b"\n" in line]
    assert (True, b"", []) == (data.isascii(), lines[-1], bad)


@PROPERTY_SETTINGS
@given(cases)
@example(dataclasses.replace(BASE_CASE, filename='""'))
@example(dataclasses.replace(BASE_CASE, filename='" "faktura.pdf" "'))
def test_subject_extra_header_and_filename_parse_back_sanitised(case: Case) -> None:
    """Subject, X-Tag and the file name come back exactly as sanitised (the name also without
    the double quotes around it), or no name if blank."""
    message = _parse(render(case.sender(), case.content()))
    filename = None
    if case.filename is not None:
        (attachment,) = message.iter_attachments()
        filename = attachment.get_filename()
    expected_filename = None if case.filename is None else (_sanitised_name(case.filename) or None)
    expected = (_sanitised(case.subject), _sanitised(case.extra_value), expected_filename)
    assert expected == (str(message["Subject"]), str(message[EXTRA_NAME]), filename)


@PROPERTY_SETTINGS
@given(display_name=texts)
@example(display_name=SPLIT_DISPLAY_NAME)
def test_display_name_decodes_back_sanitised(display_name: str) -> None:
    """The From display name decodes back exactly as sanitised (empty: a bare address).

    Decoded by RFC 2047's rule (the space between encoded words is dropped). Python 3.11's own
    address parser keeps that space inside a display name split into several encoded words
    ('gęślą' -> 'gęś lą'), so the raw header is decoded instead.
    """
    sender = Sender(address=ADDRESS, display_name=display_name, reply_to=None)
    data = render(sender, BASE_CASE.content()).data
    raw = email.message_from_bytes(data, policy=email.policy.compat32)["From"]
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", str(raw)).strip()
    decoded = str(email.header.make_header(email.header.decode_header(unfolded)))
    # "name <address>", or the bare address when the name is empty
    name, _, address = decoded.rpartition(" <") if decoded.endswith(">") else ("", "", decoded)
    assert (_sanitised(display_name), ADDRESS) == (email.utils.unquote(name), address.rstrip(">"))


@PROPERTY_SETTINGS
@given(cases)
def test_bodies_parse_back_with_lf_line_ends_and_without_nul(case: Case) -> None:
    """The text and HTML bodies decode back equal, up to LF line ends and removed NUL."""
    message = _parse(render(case.sender(), case.content()))
    body = message.get_body(preferencelist=("related", "html", "plain"))
    texts = [part for part in message.walk() if part.get_content_maintype() == "text"]
    bodies = [
        (part.get_content_subtype(), _decoded(part))
        for part in texts
        if part.get_content_disposition() != "attachment"
    ]
    expected = []
    if _has_text_part(case):
        expected.append(("plain", _body(case.body_text)))
    if case.body_html:
        expected.append(("html", _body(case.body_html)))
    assert body is not None
    assert expected == bodies


@PROPERTY_SETTINGS
@given(cases)
def test_header_names_are_exactly_the_expected_set(case: Case) -> None:
    """The message has exactly its own headers, each once, and parts only Content-* ones.

    Whatever the free text holds, no header of its own (Bcc, say) can appear.
    """
    message = _parse(render(case.sender(), case.content()))
    expected = {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        EXTRA_NAME,
    }
    if case.reply_to is not None:
        expected.add("Reply-To")
    if case.cc:
        expected.add("Cc")
    if not message.is_multipart():
        expected.add("Content-Transfer-Encoding")
    keys = message.keys()
    part_keys = {key for part in message.walk() if part is not message for key in part}
    assert (expected, len(keys), set()) == (set(keys), len(set(keys)), part_keys - PART_KEYS)


def _refused_name(name: str) -> bool:
    """Whether the docstring says an extra header ``name`` is refused."""
    printable = 1 <= len(name) <= 76 and all("!" <= char <= "~" for char in name)
    owned = {"from", "sender", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version"}
    lowered = name.lower()
    return not printable or ":" in name or lowered in owned or lowered.startswith("content-")


_names = st.one_of(
    st.sampled_from(["Bcc", "bcc", "Content-Type", "CONTENT-ID", "Subject", "X-Tag", "Reply-To"]),
    st.text(alphabet=st.sampled_from("Xx-Tag:" + POLISH + TRICKY), min_size=0, max_size=10),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
)


@PROPERTY_SETTINGS
@given(name=_names, value=texts)
def test_extra_header_names_are_refused_only_for_documented_reasons(name: str, value: str) -> None:
    """An extra header renders unless its name is invalid or owned; then MessageBuildError.

    Reply-To is the documented exception to free text: its value must be an address list,
    so it is given one here.
    """
    if name.lower() == "reply-to":
        value = "biuro@wp.pl"
    content = replace(BASE_CASE.content(), headers={name: value})
    if _refused_name(name):
        with pytest.raises(MessageBuildError, match="extra header"):
            render(BASE_CASE.sender(), content)
    else:
        message = _parse(render(BASE_CASE.sender(), content))
        assert [name] == [key for key in message if key.lower() == name.lower()]


def _quoted_entry(display_name: str, address: str) -> str:
    """An entry with ``display_name`` in double quotes, as a mail program writes any name."""
    return f'"{email.utils.quote(display_name)}" <{address}>'


def _is_address_control(char: str) -> bool:
    """C0 (TAB included), DEL and C1: the documented reason to refuse a whole entry."""
    return unicodedata.category(char) == "Cc"


def _decoded_mailbox(data: bytes, name: str) -> tuple[str, str]:
    """(display name, address) of a one-mailbox header as written: a quoted name unquoted,
    encoded words decoded by RFC 2047's rule, a UTF-8 address (RFC 6532) as it is."""
    raw = email.message_from_string(data.decode("utf-8"), policy=email.policy.compat32)[name]
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", str(raw)).strip()
    phrase, _, address = unfolded.rpartition(" <") if unfolded.endswith(">") else ("", "", unfolded)
    if phrase.startswith('"'):
        return email.utils.unquote(phrase), address.removesuffix(">")
    decoded = str(email.header.make_header(email.header.decode_header(phrase)))
    return decoded, address.removesuffix(">")


@PROPERTY_SETTINGS
@given(display_name=texts)
@example(display_name=SPLIT_DISPLAY_NAME)
@example(display_name='Dział "Kadry", pokój 12 <stary@adres.pl>')
def test_recipient_display_name_decodes_back_and_stays_out_of_the_envelope(
    display_name: str,
) -> None:
    """Any display name of a To entry comes back in To exactly (stripped), only the address
    goes into RCPT TO, the Bcc entry's name appears nowhere and no header is added; the
    message stays ASCII, CRLF, lines of at most 998 octets. A control character refuses
    the entry in words."""
    content = replace(
        BASE_CASE.content(),
        to=[_quoted_entry(display_name, RECIPIENT)],
        bcc=[_quoted_entry(display_name, HIDDEN)],
    )
    if any(_is_address_control(char) for char in display_name):
        with pytest.raises(
            MessageBuildError, match=r"^To address .* contains a control character$"
        ):
            render(BASE_CASE.sender(), content)
        return
    rendered = render(BASE_CASE.sender(), content)
    lines = rendered.data.split(b"\r\n")
    bad = [line[:60] for line in lines if len(line) > 998 or b"\r" in line or b"\n" in line]
    keys = set(email.message_from_bytes(rendered.data, policy=email.policy.default).keys())
    expected: tuple[object, ...] = (
        (display_name.strip(), RECIPIENT),
        [RECIPIENT, HIDDEN],
        (True, []),
        -1,
        {"Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type"},
    )
    actual = (
        _decoded_mailbox(rendered.data, "To"),
        rendered.recipients,
        (rendered.data.isascii(), bad),
        rendered.data.find(HIDDEN.encode()),
        keys - {EXTRA_NAME, "Content-Transfer-Encoding"},
    )
    assert expected == actual


_local_parts = st.text(alphabet=st.sampled_from(POLISH + "abcXYZ019"), min_size=1, max_size=60)


@PROPERTY_SETTINGS
@given(
    local=_local_parts, display_name=texts.filter(lambda t: not any(map(_is_address_control, t)))
)
@example(local="zażółć", display_name="Zażółć Gęślą Jaźń")
def test_a_non_ascii_local_part_is_utf8_in_its_header_only(local: str, display_name: str) -> None:
    """A local part that is not ASCII: the message asks for SMTPUTF8 and names the address;
    the address goes into RCPT TO and, as UTF-8, into To; every other line is ASCII, the
    display name still an encoded word; lines are CRLF and at most 998 octets."""
    address = f"{local}@firma.pl"
    content = replace(BASE_CASE.content(), to=[_quoted_entry(display_name, address)])
    rendered = render(BASE_CASE.sender(), content)
    lines = rendered.data.split(b"\r\n")
    bad = [line[:60] for line in lines if len(line) > 998 or b"\r" in line or b"\n" in line]
    non_ascii = [line for line in lines if not line.isascii()]
    expected_utf8 = None if local.isascii() else address
    expected: tuple[object, ...] = (
        [address],
        expected_utf8,
        (display_name.strip(), address),
        [] if local.isascii() else [line for line in non_ascii if address.encode() in line],
        (b"", []),
    )
    actual = (
        rendered.recipients,
        rendered.utf8_address,
        _decoded_mailbox(rendered.data, "To"),
        non_ascii,
        (lines[-1], bad),
    )
    assert expected == actual


@PROPERTY_SETTINGS
@given(entry=st.text(max_size=60))
@example(entry="a@[")
@example(entry='"')
def test_any_entry_renders_or_is_refused_in_words(entry: str) -> None:
    """Whatever text a row holds as an address, render builds the message or raises
    MessageBuildError naming the field, never another exception."""
    content = replace(BASE_CASE.content(), to=[entry])
    try:
        outcome = f"{len(render(BASE_CASE.sender(), content).recipients)} recipient"
    except MessageBuildError as exc:
        outcome = str(exc)
    assert "1 recipient" == outcome or outcome.startswith("To address "), outcome
