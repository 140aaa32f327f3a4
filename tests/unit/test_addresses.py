"""worker.addresses: recipients as people write them, read one way by the API and the worker."""

# SIM300: the house style writes asserts as ``expected == actual``, which SIM300 calls Yoda.

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from worker.addresses import (
    AddressError,
    Mailbox,
    address_forms,
    address_problem,
    parse_address,
    parse_mailbox,
    recipient_key,
    recipient_problem,
)
from worker.mime import MessageBuildError, MessageContent, Sender, render

ZAZOLC_PL = "xn--za-6ja4f8n1l.pl"  # zażółć.pl, by IDNA 2008


def _words(text: str) -> str:
    """The worker's sentence for ``text`` as a To entry, or "" when it is accepted."""
    try:
        parse_mailbox(text)
    except AddressError as exc:
        return exc.words("To address", text)
    return ""


# --- What is accepted -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jan@example.pl", Mailbox("", "jan@example.pl", "jan@example.pl")),
        ("  jan@example.pl ", Mailbox("", "jan@example.pl", "jan@example.pl")),
        ("<jan@example.pl>", Mailbox("", "jan@example.pl", "jan@example.pl")),
        (
            "Jan Kowalski <jan@example.pl>",
            Mailbox("Jan Kowalski", "jan@example.pl", "jan@example.pl"),
        ),
        (
            "Jan Kowalski<jan@example.pl>",
            Mailbox("Jan Kowalski", "jan@example.pl", "jan@example.pl"),
        ),
        (
            '"Kowalski, Jan" <jan@example.pl>',
            Mailbox("Kowalski, Jan", "jan@example.pl", "jan@example.pl"),
        ),
        (
            '"Dział \\"Kadry\\"" <kadry@example.pl>',
            Mailbox('Dział "Kadry"', "kadry@example.pl", "kadry@example.pl"),
        ),
        (
            "Jan K. Kowalski <jan@example.pl>",
            Mailbox("Jan K. Kowalski", "jan@example.pl", "jan@example.pl"),
        ),
        ("Zażółć <you@example.com>", Mailbox("Zażółć", "you@example.com", "you@example.com")),
        ("anna@zażółć.pl", Mailbox("", f"anna@{ZAZOLC_PL}", "anna@zażółć.pl")),
        ("anna@Zażółć.PL", Mailbox("", f"anna@{ZAZOLC_PL}", "anna@Zażółć.PL")),
        ("Anna <anna@zażółć.pl>", Mailbox("Anna", f"anna@{ZAZOLC_PL}", "anna@zażółć.pl")),
        ("zażółć@example.pl", Mailbox("", "zażółć@example.pl", "zażółć@example.pl")),
        ("zażółć@zażółć.pl", Mailbox("", f"zażółć@{ZAZOLC_PL}", "zażółć@zażółć.pl")),
        ("jan@xn--przykad-rjb.pl", Mailbox("", "jan@xn--przykad-rjb.pl", "jan@xn--przykad-rjb.pl")),
        ("Jan@Example.PL", Mailbox("", "Jan@Example.PL", "Jan@Example.PL")),
        (
            '"jan kowalski"@example.pl',
            Mailbox("", '"jan kowalski"@example.pl', '"jan kowalski"@example.pl'),
        ),
        ("Serwer <jan@[192.0.2.1]>", Mailbox("Serwer", "jan@[192.0.2.1]", "jan@[192.0.2.1]")),
    ],
)
def test_addresses_as_mail_programs_take_them(text: str, expected: Mailbox) -> None:
    """An address alone, in <>, after a plain, dotted, quoted or Polish display name, or with an
    international domain (converted by IDNA 2008 with UTS #46 mapping; an ASCII domain is kept
    as written) is read into its display name and the address to send to."""
    assert expected == parse_mailbox(text)


@pytest.mark.parametrize(
    ("text", "needs"),
    [("zażółć@example.pl", True), ("anna@zażółć.pl", False), ("Zażółć <a@example.pl>", False)],
)
def test_only_a_non_ascii_local_part_needs_smtputf8(text: str, needs: bool) -> None:
    """An international domain has an ASCII form and a display name goes into an encoded
    word; only a local part that is not ASCII needs the server's SMTPUTF8."""
    assert needs == parse_mailbox(text).needs_smtputf8


@pytest.mark.parametrize(
    "text",
    [
        "Jan Kowalski <jan@example.pl>",
        '"Kowalski, Jan" <jan@example.pl>',
        "anna@zażółć.pl",
        "Anna <anna@Zażółć.PL>",
        "zażółć@example.pl",
        "Zażółć <you@example.com>",
    ],
)
def test_the_python_api_accepts_what_people_write(text: str) -> None:
    """recipient_problem, the Python API's check, accepts display names and international
    domains and local parts, as the worker does."""
    assert None is recipient_problem(text, field="to address")


def test_a_bare_address_check_still_refuses_a_display_name() -> None:
    """address_problem is for fields that hold an address only (a profile's from_address):
    a display name there is refused."""
    problem = address_problem("Jan <jan@example.pl>", field="outgoing address (from_address)")
    expected = "outgoing address (from_address) 'Jan <jan@example.pl>' is not a valid e-mail"
    assert expected == (problem or "")[: len(expected)]


def test_a_bare_address_accepts_an_international_domain() -> None:
    """A profile's address may have an international domain: the worker sends its xn-- form."""
    assert (None, f"biuro@{ZAZOLC_PL}") == (
        address_problem("biuro@zażółć.pl", field="reply-to address"),
        parse_address("biuro@zażółć.pl").address,
    )


# --- What is refused, in words ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "jan.kowalski.example.pl",
            "To address 'jan.kowalski.example.pl' is not valid: there is no @ in it",
        ),
        ("jan@", "To address 'jan@' is not valid: nothing comes after the @"),
        ("@example.pl", "To address '@example.pl' is not valid: nothing comes before the @"),
        (
            "zły adres@",
            "To address 'zły adres@' is not valid: the part before the @ contains a space;"
            " nothing comes after the @",
        ),
        (
            "jan kowalski@example.pl",
            "To address 'jan kowalski@example.pl' is not valid: the part before the @ contains a"
            " space",
        ),
        (
            "zaż ółć@example.pl",
            "To address 'zaż ółć@example.pl' is not valid: the part before the @ contains a space",
        ),
        (
            "jan@exa mple.pl",
            "To address 'jan@exa mple.pl' is not valid: the part after the @ contains a space",
        ),
        (
            "anna@żółw.pl.",
            "To address 'anna@żółw.pl.' is not valid: the part after the @ has a dot at its start"
            " or end, or two in a row",
        ),
        (
            "anna@zażółć..pl",
            "To address 'anna@zażółć..pl' is not valid: its domain 'zażółć..pl' is not a valid"
            " international domain name (IDNA 2008: Empty Label)",
        ),
        (
            "a@example.pl, b@example.pl",
            "To address 'a@example.pl, b@example.pl' is not valid: it has ',' outside double"
            " quotes: an entry holds one address, and a display name with ',' is written in"
            " double quotes",
        ),
        (
            "Kowalski, Jan <jan@example.pl>",
            "To address 'Kowalski, Jan <jan@example.pl>' is not valid: it has ',' outside double"
            " quotes: an entry holds one address, and a display name with ',' is written in"
            " double quotes",
        ),
        (
            "Jan (biuro) <jan@example.pl>",
            "To address 'Jan (biuro) <jan@example.pl>' is not valid: its display name"
            " 'Jan (biuro)' has '(', ')', which only a name in double quotes may have"
            ' ("..." <address>)',
        ),
        (
            "Jan <jan@example.pl",
            "To address 'Jan <jan@example.pl' is not valid: the '<' before the address has no '>'"
            " at the end",
        ),
        ("Jan <>", "To address 'Jan <>' is not valid: there is no address between '<' and '>'"),
        (
            "Jan <<jan@example.pl>>",
            "To address 'Jan <<jan@example.pl>>' is not valid: it has more than one '<' or '>'"
            " around the address",
        ),
        (
            "Jan <zaż..ółć@example.pl>",
            "To address 'Jan <zaż..ółć@example.pl>' is not valid: the part before the @ has a"
            " dot at its start or end, or two dots in a row",
        ),
        (
            "Jan\t<jan@example.pl>",
            "To address 'Jan\\t<jan@example.pl>' contains a control character",
        ),
        ("   ", "To address is empty"),
    ],
)
def test_refusals_say_what_is_wrong(text: str, expected: str) -> None:
    """A missing @, an empty side, a space, a domain IDNA refuses (named), two addresses in one
    entry, specials in an unquoted name, a broken <...>: each is said in words."""
    assert expected == _words(text)


def test_an_address_over_254_octets_as_sent_is_refused() -> None:
    """The limit counts the address as it goes on the wire: the domain in its xn-- form and
    the local part in UTF-8, not the characters as written."""
    text = "ż" * 120 + "@zażółć.pl"  # 130 characters, 240 + 20 octets as sent
    expected = (
        f"To address {text!r} is not valid: it is 260 octets as sent (the domain in its xn--"
        " form), over the limit of 254"
    )
    assert expected == _words(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "zły adres@",
            "to address 'zły adres@' is not a valid e-mail address: The email address contains"
            " invalid characters before the @-sign: SPACE.",
        ),
        (
            "jan@",
            "to address 'jan@' is not a valid e-mail address: There must be something after the"
            " @-sign.",
        ),
        (
            "Jan <jan@ex_ample.pl>",
            "to address 'Jan <jan@ex_ample.pl>' is not a valid e-mail address: The part after the"
            " @-sign contains invalid characters: '_'.",
        ),
        (
            "Kowalski, Jan <jan@example.pl>",
            "to address 'Kowalski, Jan <jan@example.pl>' is not a valid e-mail address: it has ','"
            " outside double quotes: an entry holds one address, and a display name with ',' is"
            " written in double quotes",
        ),
    ],
)
def test_the_python_api_says_what_is_wrong_not_to_use_xn(text: str, expected: str) -> None:
    """The API's words name the mistake (a space, a missing domain, a bad character in the
    domain, two addresses) and never send a person to the xn-- form."""
    assert expected == recipient_problem(text, field="to address")


# --- One recipient per address ------------------------------------------------------------


def test_one_address_under_two_display_names_is_one_recipient() -> None:
    """The display name and letter case do not make another recipient; the domain's Unicode
    and xn-- forms are one domain."""
    entries = [
        "jan@example.pl",
        "Jan Kowalski <JAN@example.pl>",
        '"Kowalski, Jan" <jan@EXAMPLE.pl>',
        "anna@zażółć.pl",
        f"Anna <anna@{ZAZOLC_PL}>",
    ]
    assert {"jan@example.pl", f"anna@{ZAZOLC_PL}"} == {recipient_key(e) for e in entries}


# --- What the API accepts, the worker sends -------------------------------------------------

_GOOD_LOCAL_PARTS = ["jan", "anna.nowak", "zażółć", "Żaneta.Ów", "ß", "a+b", "a_b", "😀"]
_BAD_LOCAL_PARTS = ['"jan kowalski"', "jan kowalski", "ja..n", "", ".jan", "jan(x)", "ż\u2028ż"]
_LOCAL_PARTS = st.sampled_from([*_GOOD_LOCAL_PARTS, *_BAD_LOCAL_PARTS])
_GOOD_DOMAINS = ["example.pl", "zażółć.pl", "Zażółć.PL", "xn--przykad-rjb.pl", "ß.de", "a.żółw.pl"]
_BAD_DOMAINS = ["", "ex_ample.pl", "zażółć..pl", "example", "😀.pl", "[192.0.2.1]", "-ż.pl"]
_DOMAINS = st.sampled_from([*_GOOD_DOMAINS, *_BAD_DOMAINS])
_NAMES = st.one_of(
    st.none(),
    st.sampled_from(["", "Jan Kowalski", "Zażółć Gęślą", '"Kowalski, Jan"', "Jan K. Kowalski"]),
    st.sampled_from(["Kowalski, Jan", "Jan (biuro)", "a@b", '"Dział \\"Kadry\\""', "Jan <"]),
    st.text(max_size=15),
)


def _entry(name: str | None, local: str, domain: str) -> str:
    address = f"{local}@{domain}"
    return address if name is None else f"{name} <{address}>"


# Entries as people write them (good and bad), and arbitrary text.
_ENTRIES = st.one_of(
    st.builds(_entry, _NAMES, _LOCAL_PARTS, _DOMAINS),
    st.builds(_entry, _NAMES, st.sampled_from(_GOOD_LOCAL_PARTS), st.sampled_from(_GOOD_DOMAINS)),
    st.text(max_size=40),
)
_SENDER = Sender(address="jankowalski@wp.pl", display_name="Powiadomienia", reply_to=None)


def _content(entry: str) -> MessageContent:
    return MessageContent(
        to=[entry],
        cc=[],
        bcc=[],
        subject="Test",
        body_text="Dzień dobry",
        body_html=None,
        headers={},
        message_id="<a@wp.pl>",
        attachments=[],
    )


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(entry=_ENTRIES)
@example(entry="Jan Kowalski <jan@zażółć.pl>")
@example(entry="zażółć@example.pl")
def test_what_the_api_accepts_the_worker_renders(entry: str) -> None:
    """Every entry the Python API accepts renders, with its address in the envelope: enqueue
    and the worker cannot drift apart."""
    if recipient_problem(entry, field="to address") is not None:
        return
    try:
        rendered = render(_SENDER, _content(entry))
    except MessageBuildError as exc:
        pytest.fail(f"the API accepted {entry!r}, the worker refused it: {exc}")
    assert [parse_mailbox(entry).address] == rendered.recipients


@pytest.mark.parametrize(
    ("text", "forms"),
    [
        ("anna@example.pl", ["anna@example.pl"]),
        ("Anna Nowak <Anna@Example.PL>", ["anna@example.pl"]),
        ("jan@Zażółć.pl", ["jan@xn--za-6ja4f8n1l.pl", "jan@zażółć.pl"]),
        ("Jan <jan@xn--za-6ja4f8n1l.pl>", ["jan@xn--za-6ja4f8n1l.pl", "jan@zażółć.pl"]),
        ("zły adres@", ["zły adres@"]),
    ],
)
def test_an_address_is_looked_for_in_every_form_a_row_may_hold(text: str, forms: list[str]) -> None:
    """Display name and case aside; the domain as written, in xn-- and in Unicode; an entry
    that is no address is looked for as it is."""
    assert forms == address_forms(text)
