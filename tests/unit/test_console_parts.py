"""The console's pure parts: the login throttle, the language choice, the Polish catalogue."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir

from worker.console.auth import LoginThrottle
from worker.console.i18n import choose_language, translations

CONSOLE = Path(__file__).resolve().parents[2] / "worker" / "console"
TEMPLATES = CONSOLE / "templates"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_holds_after_five_failures_for_the_window() -> None:
    """Five failures of one name from one address: it waits until the first is 5 min old;
    another name or address is not held."""
    clock = _Clock()
    throttle = LoginThrottle(limit=5, window=300, clock=clock)
    for _ in range(4):
        throttle.failed("Ewa", "10.0.0.1")
        clock.now += 10
    assert 0 == throttle.wait_seconds("ewa", "10.0.0.1")
    throttle.failed("ewa", "10.0.0.1")

    assert 260 == throttle.wait_seconds("EWA", "10.0.0.1")
    assert 0 == throttle.wait_seconds("ewa", "10.0.0.2")
    assert 0 == throttle.wait_seconds("jan", "10.0.0.1")
    clock.now += 260
    assert 0 == throttle.wait_seconds("ewa", "10.0.0.1")


def test_the_language_is_the_chosen_one_else_the_browsers_best() -> None:
    """A choice in the session wins; else Accept-Language by weight; else English."""
    assert "en" == choose_language("en", "pl-PL,pl;q=0.9")
    assert "pl" == choose_language(None, "de;q=0.9,pl;q=0.8,en;q=0.1")
    assert "en" == choose_language(None, "pl;q=0,en-GB")
    assert "en" == choose_language("fr", "de, fr;q=bad")
    assert "en" == choose_language(None, None)


def test_every_text_of_the_templates_has_a_polish_translation() -> None:
    """No page shows English in the middle of Polish: each message id in the templates is in
    the Polish catalogue (English needs none: the ids are English)."""
    method_map = [("**.html", "jinja2")]
    polish = translations("pl")
    ids = {message for _, _, message, *_ in extract_from_dir(TEMPLATES, method_map)}
    assert len(ids) > 20
    missing = sorted(str(message) for message in ids if polish.gettext(message) == message)
    assert ["Login", "Port", "administrator"] == missing  # the same word in both languages


def test_every_http_error_of_the_pages_has_a_polish_translation() -> None:
    """The error page says an HTTPException's detail in the page's language: each detail the
    page modules raise, and Starlette's own for an unknown page or method, is in Polish."""
    raised = re.compile(r'HTTPException\(\s*\d+,\s*"([^"]+)"')
    details = {"Not Found", "Method Not Allowed"}
    for module in CONSOLE.glob("*.py"):
        details |= set(raised.findall(module.read_text(encoding="utf-8")))
    polish = translations("pl")
    assert len(details) > 6
    assert [] == sorted(detail for detail in details if polish.gettext(detail) == detail)
