"""The core's sentences in a person's language: reasons, hints and preset advice, one catalogue.

The core writes English and stores it (a profile's ``pause_reason``, a message's
``status_reason``); the console, and any reader, says it in Polish with :func:`translator`.

* Each sentence the core writes is marked with :func:`N_` (a no-op, so Babel's extractor finds
  it: ``pybabel extract -k N_``). A sentence with values names them: ``N_("TLS failed:
  %(reply)s") % {"reply": text}``; the English output is the same as an f-string's.
* The Polish words are in ``locale/pl/LC_MESSAGES/mailworker.po`` (English is the msgid), read
  with Babel when first needed, as the console's catalogue is.
* A stored text is translated whole when it is a msgid, else by the first template (most fixed
  words first) whose fixed words it matches, with each placeholder's value put into the Polish
  template. A placeholder's name says what its value is, and so how a text is split into
  values (:data:`FREE_TEXT`, :data:`NUMBERS`, :data:`QUOTED`, :data:`LABELS`, :data:`HOSTS`,
  :data:`PLAIN`). A value named in :data:`NESTED` is itself one of our sentences (a reason
  inside "waiting to retry at ...: %(reason)s") and is translated in turn; any other value (a
  server's reply, a name, a moment) is kept byte for byte. Text no template matches is left
  as it is.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = [
    "DOMAIN",
    "FREE_TEXT",
    "HOSTS",
    "LABELS",
    "LOCALE_DIR",
    "NESTED",
    "NUMBERS",
    "N_",
    "PLAIN",
    "QUOTED",
    "Translator",
    "catalogue",
    "placeholders",
    "translator",
]

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "mailworker"
# A placeholder's name says what its value is, and so how a stored text is split into values.
# One of the core's own sentences, translated in its turn:
NESTED = frozenset({"reason", "hint", "why", "cap", "next", "field", "unit"})
# Free text (a reason, a server's reply) that may hold any of our words' separators: it takes
# all it can, so "535 x (hint: y) z (hint: check the login ...)" splits at the last " (hint: ".
FREE_TEXT = frozenset({"reason", "reply", "replies", "error"})
# A whole number, and a value as Python's repr() quotes it ('jan@', "o'brien").
NUMBERS = frozenset({"all", "attempt", "attempts", "count", "limit", "most", "number", "port",
                     "refused", "size"})  # fmt: skip
QUOTED = frozenset({"address", "host", "local", "login", "name", "url", "value"})
# A field's name ("To address", "daily cap"): words without a colon, so that a stored "failed:
# To address 'x' is not valid: ..." is "failed: " before a problem of the field "To address".
LABELS = frozenset({"field"})
# A server (host, or host:port) never holds a space: "waiting: profile x paused until ...:
# smtp.x.pl:587 offers no STARTTLS; ..." is a pause around that reason, not a server so named.
HOSTS = frozenset({"server"})
# Anything else (a profile's name, a moment, a word) takes the least it can.
PLAIN = frozenset({"at", "characters", "duration", "encryption", "flow", "flows", "names",
                   "offered", "ports", "preset", "profile", "provider", "seconds", "setting",
                   "since", "stage", "status", "tenant", "until", "user", "worker"})  # fmt: skip
_KINDS = (
    (FREE_TEXT, "(?P<{}>.+)"),
    (NUMBERS, r"(?P<{}>-?\d+)"),
    (QUOTED, """(?P<{}>'.*?'|".*?")"""),
    (LABELS, "(?P<{}>[^:]+?)"),
    (HOSTS, r"(?P<{}>\S+?)"),
)
_MIN_FIXED = 3  # a template of values and a space or two would match any text
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_MAX_DEPTH = 6  # sentences nest two or three deep; more is a value that only looks like one


def N_(sentence: str) -> str:  # noqa: N802 - the name gettext's tools know for "mark only"
    """Mark ``sentence`` as one of the core's sentences to translate; it is returned as is."""
    return sentence


def placeholders(template: str) -> set[str]:
    """The names of ``template``'s ``%(name)s`` placeholders."""
    return set(_PLACEHOLDER.findall(template))


@dataclasses.dataclass(frozen=True)
class _Template:
    pattern: re.Pattern[str]
    translation: str


class Translator:
    """Says the core's sentences in one language, from its catalogue (msgid → msgstr)."""

    def __init__(self, entries: Mapping[str, str]) -> None:
        self._whole = {_normal(msgid): msgstr for msgid, msgstr in entries.items()}
        templated = [(msgid, msgstr) for msgid, msgstr in entries.items() if "%(" in msgid]
        # The template with the most fixed words first: "waiting: profile %(profile)s paused
        # until %(until)s: %(reason)s (hint: %(hint)s)" before its shorter forms.
        templated.sort(key=lambda entry: -len(_PLACEHOLDER.sub("", entry[0])))
        self._templates = [
            _Template(_pattern(msgid), msgstr)
            for msgid, msgstr in templated
            if msgstr and len(_PLACEHOLDER.sub("", msgid).strip()) >= _MIN_FIXED
        ]

    def __call__(self, text: str | None) -> str:
        return self._translate(text or "", 0)

    def _translate(self, text: str, depth: int) -> str:
        whole = self._whole.get(_normal(text))
        if whole:
            return whole
        if depth >= _MAX_DEPTH:
            return text
        for template in self._templates:
            match = template.pattern.fullmatch(text)
            if match is None:
                continue
            values = {
                name: self._translate(value, depth + 1) if name in NESTED else value
                for name, value in match.groupdict().items()
            }
            return template.translation % values
        return text


def _normal(text: str) -> str:
    """``text`` with its runs of white space made one space (how preset advice is shown)."""
    return " ".join(text.split())


def _pattern(template: str) -> re.Pattern[str]:
    """A pattern matching the texts ``template`` makes, each placeholder a named group."""
    parts: list[str] = []
    seen: set[str] = set()
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[position : match.start()].replace("%%", "%")))
        name = match[1]
        if name in seen:
            parts.append(f"(?P={name})")
        else:
            kind = next((form for names, form in _KINDS if name in names), "(?P<{}>.+?)")
            parts.append(kind.format(name))
        seen.add(name)
        position = match.end()
    parts.append(re.escape(template[position:].replace("%%", "%")))
    return re.compile("".join(parts), re.DOTALL)


@functools.cache
def catalogue(language: str) -> Mapping[str, str]:
    """The translated entries (msgid → msgstr) of ``language``'s catalogue; none for English."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.is_file():
        return {}
    from babel.messages.pofile import read_po  # noqa: PLC0415 - English readers need no Babel

    with path.open("rb") as po:
        entries = read_po(po, locale=language, domain=DOMAIN)
    return {
        str(message.id): str(message.string)
        for message in entries
        if message.id and message.string and not message.fuzzy
    }


@functools.cache
def translator(language: str) -> Callable[[str | None], str]:
    """How the core's sentences read in ``language``; English (the msgids) as they are."""
    return Translator(catalogue(language))
