"""The console's languages: Polish and English, chosen from Accept-Language or by the person.

English is the language of the templates' message ids; Polish comes from
``locale/pl/LC_MESSAGES/console.po``, read with Babel when first needed (no build step,
no compiled ``.mo`` to keep in step with it).
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Callable
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from worker.sentences import translator

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LOCALE_DIR",
    "choose_language",
    "explainer",
    "translations",
]

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "console"
# Each language with its name in itself, as the switch shows it.
LANGUAGES = {"pl": "Polski", "en": "English"}
DEFAULT_LANGUAGE = "en"


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language``; English (the message ids) needs none."""
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def explainer(language: str) -> Callable[[str | None], str]:
    """How the pages say a core sentence (hint, reason, preset advice) in ``language``.

    The core's own catalogue (:mod:`worker.sentences`) translates its words; a server's
    reply inside a reason stays as the server wrote it, and text it does not know stays as is.
    """
    return translator(language)


def choose_language(chosen: object, accept_language: str | None) -> str:
    """The language to show: the one the person chose, else the best of Accept-Language.

    ``"pl-PL,pl;q=0.9,en;q=0.5"`` → ``"pl"``; nothing we have → English.
    """
    if isinstance(chosen, str) and chosen in LANGUAGES:
        return chosen
    ranked = sorted(_accepted(accept_language or ""), key=lambda pair: -pair[1])
    for tag, quality in ranked:
        primary = tag.split("-")[0].lower()
        if quality > 0 and primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def _accepted(header: str) -> list[tuple[str, float]]:
    """The header's language tags with their weights, in the order given."""
    accepted = []
    for part in header.split(","):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        if tag.strip():
            accepted.append((tag.strip(), quality))
    return accepted
