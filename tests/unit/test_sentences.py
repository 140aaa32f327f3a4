"""The core's sentences in Polish: every marked sentence and every preset's advice has its
words, values survive translation, and a server's reply is never translated."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosmtplib
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from tests.unit.test_message_status import NOW, attempt, status
from worker.classify import Stage, classify
from worker.message_status import judge
from worker.operations import MessageChange, cancel_refusal, change_outcomes, retry_refusal
from worker.outbox import Attachment, OutboxMessage
from worker.outcomes import paused_reason
from worker.presets import load_presets
from worker.profiles import RecipientLimit
from worker.retry import RetryPolicy, decide
from worker.sentences import (
    FREE_TEXT,
    HOSTS,
    LABELS,
    LOCALE_DIR,
    NESTED,
    NUMBERS,
    PLAIN,
    QUOTED,
    Translator,
    catalogue,
    placeholders,
    translator,
)
from worker.test_message import RECIPIENT_HINT

PACKAGE = Path(__file__).resolve().parents[2] / "worker"
CATALOGUE = LOCALE_DIR / "pl" / "LC_MESSAGES" / "mailworker.po"
PRESET_ADVICE = ("hint", "auth_failure_hint", "oauth_hint")
polish = translator("pl")


def _marked_sentences() -> set[str]:
    """The sentences the core (and the console's form, for its problems) marks with N_."""
    found = extract_from_dir(PACKAGE, [("**.py", "python")], keywords={"N_": None})
    return {str(message) for _, _, message, *_ in found}


def _preset_advice() -> dict[str, str]:
    """Each preset's advice, as the pages show it (white space made single spaces)."""
    return {
        f"{name}.{field}": " ".join(getattr(preset, field).split())
        for name, preset in load_presets().items()
        for field in PRESET_ADVICE
        if getattr(preset, field)
    }


def test_every_marked_core_sentence_has_a_polish_translation() -> None:
    """No reason or hint stays English on a Polish page: each N_ sentence has Polish words."""
    marked = _marked_sentences()
    assert len(marked) > 60
    assert [] == sorted(sentence for sentence in marked if sentence not in catalogue("pl"))


def test_every_presets_advice_has_a_polish_translation() -> None:
    """Each preset's hint, auth_failure_hint and oauth_hint is said in Polish."""
    advice = _preset_advice()
    assert {"wp.hint", "gmail.auth_failure_hint", "office365.oauth_hint"} <= set(advice)
    untranslated = [where for where, text in advice.items() if polish(text) == text]
    assert [] == untranslated


def test_the_catalogue_holds_no_entry_nobody_uses() -> None:
    """Every Polish entry is a marked sentence or a preset's advice: none is left over after
    its English changed."""
    used = _marked_sentences() | set(_preset_advice().values())
    assert [] == sorted(set(catalogue("pl")) - used)


def test_placeholders_survive_translation() -> None:
    """Each Polish sentence has the same %(name)s values as its English one, and no other
    % directive (a value would be lost or the formatting would fail)."""
    with CATALOGUE.open("rb") as po:
        entries = [message for message in read_po(po) if message.id]
    assert len(entries) > 80
    for message in entries:
        english, words = str(message.id), str(message.string)
        assert (english, placeholders(english)) == (english, placeholders(words))
        if placeholders(english):
            values = {name: f"<{name}>" for name in placeholders(english)}
            said = words % values  # a stray % directive raises here
            assert all(value in said for value in values.values())


@pytest.mark.parametrize(
    ("english", "expected"),
    [
        (
            "TLS failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:1000)",
            "błąd TLS: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:1000)",
        ),
        (
            "waiting: daily cap of 300 messages reached; room again at 2026-12-07T08:00:00Z",
            "czeka: osiągnięto dzienny limit 300 wiadomości; miejsce znów od 2026-12-07T08:00:00Z",
        ),
        (
            "failed: gave up after 8 attempts; last: 451 4.3.0 Try again later",
            "niewysłana: zaniechano po wyczerpaniu prób (8); ostatnio: 451 4.3.0 Try again later",
        ),
        ("waiting: profile stary is disabled", "czeka: konto stary jest wyłączone"),
        ("queued again by an operator", "ponownie w kolejce na polecenie operatora"),
        (
            "the OAuth 2.0 sign-in was refused: the sign-in of profile o365 is no longer valid"
            " (invalid_grant: AADSTS70000: The provided grant has expired)",
            "logowanie OAuth 2.0 zostało odrzucone: logowanie konta o365 nie jest już ważne"
            " (invalid_grant: AADSTS70000: The provided grant has expired)",
        ),
        (
            "the OAuth 2.0 sign-in was refused: 535 5.7.3 Authentication unsuccessful",
            "logowanie OAuth 2.0 zostało odrzucone: 535 5.7.3 Authentication unsuccessful",
        ),
        (
            "daily recipient cap 0 must be at least 1 (leave it empty for no cap)",
            "dzienny limit odbiorców 0: wartość musi wynosić co najmniej 1"
            " (zostaw puste, aby nie było limitu)",
        ),
        (
            "outgoing address (from_address) 'jan kowalski@wp.pl' is not a valid e-mail"
            " address: there is no @ in it",
            "pole „Email wychodzący (from_address)”: 'jan kowalski@wp.pl' nie jest poprawnym"
            " adresem e-mail: nie ma w nim znaku @",
        ),
        (
            "failed: To address 'jan@wp.pl>' is not valid: it ends with '>' but has no '<'"
            " before the address",
            "niewysłana: pole „Adresat (To)”: 'jan@wp.pl>' nie jest poprawnym adresem: kończy się"
            " znakiem '>', ale przed adresem nie ma '<'",
        ),
        ("failed: Cc address is empty", "niewysłana: pole „Kopia (Cc)” jest puste"),
        ("the password is empty", "hasło jest puste"),
        (
            "waiting: profile biuro paused until 2026-12-06T08:00:00Z: smtp.x.pl:587 offers no"
            " STARTTLS; the password will not be sent over an unencrypted connection",
            "czeka: konto biuro wstrzymane do 2026-12-06T08:00:00Z: smtp.x.pl:587 nie oferuje"
            " STARTTLS; hasło nie zostanie wysłane niezaszyfrowanym połączeniem",
        ),
        (
            "not retried: it expired at 2026-12-01T08:00:00Z (expires_at), so it would fail"
            " again at once",
            "nie ponowiono: termin ważności wiadomości minął 2026-12-01T08:00:00Z (expires_at),"
            " więc od razu znów nie zostałaby wysłana",
        ),
    ],
)
def test_stored_reasons_read_in_polish(english: str, expected: str) -> None:
    """Reasons as the core stores them, sentences nested in sentences, come out in Polish."""
    assert expected == polish(english)


def test_a_servers_reply_is_kept_byte_for_byte() -> None:
    """A refused login, classified and decided as the worker does, becomes the message's
    reason; in Polish only our words change: the reply (its %, quotes, Latin-2 escape and
    all) is the server's own."""
    reply = '5.7.8 Username and "Password" not accepted 100% \\xb3 (hint: no) https://x.pl/?a=1'
    failure = classify(aiosmtplib.SMTPAuthenticationError(535, reply), Stage.AUTH)
    now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    decision = decide(
        failure, attempt=1, age=timedelta(0), pause_count=0, now=now,
        policy=RetryPolicy(), rng=random.Random(1),
    )  # fmt: skip
    assert failure.hint is not None
    stored = paused_reason("gmail", now + timedelta(minutes=1), failure.reason, failure.hint)

    said = polish(stored)

    assert f"535 {reply}" == failure.reason == decision.reason
    assert (
        f"czeka: konto gmail wstrzymane do 2026-12-06T08:01:00Z: 535 {reply}"
        " (wskazówka: sprawdź login i hasło konta)"
    ) == said


def test_a_value_that_looks_like_our_words_is_still_the_servers() -> None:
    """A reply that reads like one of our sentences is not translated: only nested reasons
    and hints are, never a reply, a name or a moment."""
    stored = "TLS failed: the provider's sending limit was reached"
    assert "błąd TLS: the provider's sending limit was reached" == polish(stored)


def test_unknown_text_and_english_pass_through() -> None:
    """Text the catalogue does not know is shown as it is; English is the msgids themselves."""
    odd = "550 5.1.1 <anna@example.pl>: Recipient address rejected"
    assert odd == polish(odd)
    assert "" == polish(None)
    english = translator("en")
    for sentence in ("check the login and password of the profile", odd, "sent"):
        assert sentence == english(sentence)
    assert "" == english(None)


def test_preset_advice_is_found_whatever_its_line_breaks() -> None:
    """Advice as providers.toml holds it and as a page shows it is the same entry."""
    advice = load_presets()["wp"].hint
    assert polish(advice) == polish(advice.replace(" ", "\n  ", 3))
    assert "Login to część adresu przed znakiem @" in polish(advice)


def test_the_template_with_most_fixed_words_wins() -> None:
    """Of two templates that both match, the longer one decides how the text is split, and
    a value repeated in a template must be the same in both places."""
    words = Translator(
        {
            "waiting: %(why)s": "czeka: %(why)s",
            "waiting: %(cap)s reached": "czeka: osiągnięto %(cap)s",
            "cap": "limit",
            "%(a)s and %(a)s": "%(a)s i %(a)s",
            "100%% sure: %(reason)s": "pewne na 100%%: %(reason)s",
        }
    )
    assert "czeka: osiągnięto limit" == words("waiting: cap reached")
    assert "czeka: limit" == words("waiting: cap")
    assert "x i x" == words("x and x")
    assert "x and y" == words("x and y")
    assert "pewne na 100%: limit" == words("100% sure: cap")


def test_every_placeholder_says_what_its_value_is() -> None:
    """Each placeholder name of the catalogue is of one known kind, so its value is split
    from the text as it should be (a number as digits, a repr in its quotes, a reply whole)."""
    known = FREE_TEXT | HOSTS | LABELS | NESTED | NUMBERS | PLAIN | QUOTED
    names = {name for msgid in catalogue("pl") for name in placeholders(msgid)}
    assert [] == sorted(names - known)


def _sample(name: str) -> str:
    """A value of the placeholder ``name``'s kind that is none of our sentences."""
    kinds = ((NUMBERS, "7"), (QUOTED, "'qq'"), (FREE_TEXT, "550 zz yy"), (LABELS, "pole zz"),
             (HOSTS, "smtp.zz:587"))  # fmt: skip
    return next((value for names, value in kinds if name in names), "zz")


def test_each_sentence_reads_as_its_own_polish() -> None:
    """Each entry, its values filled in, is translated by its own Polish words: no other
    template takes it (as "%(field)s is empty" once took "the password is empty")."""
    mistaken = []
    for english, words in catalogue("pl").items():
        values = {name: _sample(name) for name in placeholders(english)}
        text, expected = (english % values, words % values) if values else (english, words)
        if polish(text) != expected:
            mistaken.append((text, polish(text)))
    assert [] == mistaken


def test_a_template_of_values_alone_matches_nothing() -> None:
    """A msgid with no words of its own besides a space would match any text: it is not used
    as a template (the whole text still translates)."""
    words = Translator({"%(a)s %(b)s": "%(b)s %(a)s", "%(a)s is empty": "%(a)s jest puste"})
    assert "550 rejected" == words("550 rejected")
    assert "x jest puste" == words("x is empty")


def test_a_test_emails_judgement_reads_in_polish() -> None:
    """What send-test says of a message, in Polish: our words around the stored reason (itself
    translated) and the server's reply as it came."""
    retrying = status(
        attempts=2, recorded_attempts=2, next_attempt_at=NOW + timedelta(seconds=90),
        status_reason="waiting to retry at 2026-12-01T08:01:30Z: 421 4.4.2 Connection dropped",
        latest_attempt=attempt("retry", error="421 4.4.2 Connection dropped"),
        last_error="421 4.4.2 Connection dropped",
    )  # fmt: skip
    paused = status(
        profile_paused_until=NOW + timedelta(hours=1),
        profile_pause_reason="535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6",
        profile_pause_hint="check the login and password of the profile",
    )

    waiting = judge(retrying, remaining=0, timeout=60)
    refused = judge(paused, remaining=30, timeout=60)

    assert waiting is not None
    assert refused is not None
    assert (
        "pobrana, ale niewysłana (prób: 2); ostatni błąd: 421 4.4.2 Connection dropped;"
        " następna próba o 2026-12-01T08:01:30Z (za 90 s)"
    ) == polish(waiting.reason)
    assert (
        "konto wp jest wstrzymane do 2026-12-01T09:00:00Z:"
        " 535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6"
    ) == polish(refused.reason)
    assert "sprawdź login i hasło konta" == polish(refused.hint)


def test_an_operators_refused_retry_or_cancel_reads_in_polish() -> None:
    """Why a retry or cancel left a message as it was, as the queue page shows it: the moment
    and the status are kept as they came."""
    expired = MessageChange(id=5, status="failed", changed=False,
                            expires_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC))  # fmt: skip
    sending = MessageChange(id=6, status="sending", changed=False)
    odd = MessageChange(id=7, status="archived", changed=False)
    missing = change_outcomes([8], [], cancel_refusal)[0].refusal

    assert (
        "nie ponowiono: termin ważności wiadomości minął 2026-12-01T08:00:00Z (expires_at),"
        " więc od razu znów nie zostałaby wysłana"
    ) == polish(retry_refusal(expired))
    assert "nie ponowiono: wiadomość jest właśnie wysyłana" == polish(retry_refusal(sending))
    assert "nie anulowano: wiadomość jest właśnie wysyłana, a wysyłki nie da się cofnąć" == polish(
        cancel_refusal(sending)
    )
    assert "nie anulowano: stan wiadomości to archived" == polish(cancel_refusal(odd))
    assert "nie ma takiej wiadomości" == polish(missing)


def test_a_test_emails_advice_for_a_refused_recipient_reads_in_polish() -> None:
    """The advice beside a refused recipient on the Send test page."""
    assert polish(RECIPIENT_HINT).startswith("sprawdź, czy w adresie odbiorcy nie ma literówki;")


def test_a_messages_problems_read_in_polish_with_their_values() -> None:
    """What enqueue refuses, as the Send test page shows it beside the fields: the typed
    address, the file's number and the sizes stay as they were."""
    message = OutboxMessage(
        to=(" ", "jan kowalski@wp.pl", "Jan <jan@wp.pl"), subject="Raport\nmiesięczny",
        body_text="x" * 10,
        attachments=(Attachment("raport.pdf", b"y" * 20, "pdf"),),
    )  # fmt: skip
    too_many = RecipientLimit(profile="sklep", count=120, limit=100, daily=True)

    said = [polish(problem) for problem in message.problems(max_bytes=25)]

    assert [
        "pole „Adresat (to)” jest puste",
        "pole „Adresat (to)”: 'jan kowalski@wp.pl' nie jest poprawnym adresem e-mail:"
        " Adres e-mail zawiera niedozwolone znaki przed znakiem @: SPACE.",
        "pole „Adresat (to)”: 'Jan <jan@wp.pl' nie jest poprawnym adresem e-mail:"
        " znak '<' przed adresem nie ma na końcu pary '>'",
        "temat zawiera znak nowego wiersza lub NUL",
        "typ treści załącznika 1, 'pdf', nie ma postaci typ/podtyp",
        "wiadomość ma 30 bajtów (treść i załączniki), więcej niż limit 25 bajtów",
    ] == said
    assert (
        "liczba odbiorców wiadomości (do, DW i UDW razem) to 120; konto 'sklep' pozwala najwyżej"
        " na 100 dziennie (dzienny limit odbiorców): wyślij ją jako kilka wiadomości"
    ) == polish(too_many.refusal())
    assert (
        "liczba odbiorców wiadomości to 120, więcej niż dzienny limit odbiorców konta sklep (100)"
    ) == polish(too_many.failure())
