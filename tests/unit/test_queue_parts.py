"""The queue's pure parts: the filter as typed, the page position, and the words for a retry
or cancel that left a message alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.console.queue_filter import PAGE_SIZE, QueueFilter
from worker.operations import (
    MessageChange,
    MessageKey,
    cancel_refusal,
    change_outcomes,
    retry_refusal,
)


def test_a_key_survives_its_token_to_the_microsecond() -> None:
    """The token of a row's key reads back as the same key, in UTC, microseconds kept."""
    key = MessageKey(created_at=datetime(2026, 12, 6, 7, 43, 42, 123456, tzinfo=UTC), id=42)

    assert "1796543022123456_42" == key.token
    assert key == MessageKey.parse(key.token)


@pytest.mark.parametrize("token", ["", "42", "abc_1", "1_x", "1_-2", "9" * 30 + "_1", "1__2"])
def test_any_other_text_is_no_key(token: str) -> None:
    """A token that no page made is refused with ValueError, never read as some position."""
    with pytest.raises(ValueError, match="not a position"):
        MessageKey.parse(token)


def test_each_requested_message_gets_its_outcome_in_the_order_asked() -> None:
    """Changed, already so, refused with the reason, or unknown: one outcome per id."""
    changes = [
        MessageChange(id=1, status="pending", changed=True),
        MessageChange(id=2, status="cancelled", changed=False),
        MessageChange(id=3, status="sending", changed=False),
    ]

    outcomes = change_outcomes([3, 9, 2, 1], changes, cancel_refusal)

    assert [
        (
            3,
            "refused",
            "not cancelled: it is being sent right now, and a send cannot be called back",
        ),
        (9, "refused", "no such message"),
        (2, "already", None),
        (1, "changed", None),
    ] == [(outcome.id, outcome.result, outcome.refusal) for outcome in outcomes]


def test_a_retry_refusal_names_the_expiry() -> None:
    """A failed message past its expires_at is not retried, and the reason gives the time."""
    expired = MessageChange(id=5, status="failed", changed=False,
                            expires_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC))  # fmt: skip

    assert retry_refusal(expired).startswith("not retried: it expired at 2026-12-01T08:00:00Z")
    assert "not retried: it was sent" == retry_refusal(
        MessageChange(id=6, status="sent", changed=False)
    )


NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def test_the_filter_selects_as_messages_list_does() -> None:
    """Statuses as the CLI reads them (several, comma-separated), the since age back from now,
    empty fields filtering nothing; one row more than a page, to know if another follows."""
    chosen = QueueFilter.read(
        {"status": "failed,cancelled", "profile": " sklep ", "recipient": "", "since": "2h"},
        now=NOW,
    )

    selection = chosen.selection(now=NOW)

    assert {} == chosen.problems
    assert (("failed", "cancelled"), "sklep", None) == (
        tuple(selection.statuses),
        selection.profile,
        selection.recipient,
    )
    assert datetime(2026, 12, 6, 6, 0, tzinfo=UTC) == selection.since
    assert PAGE_SIZE + 1 == selection.limit


def test_the_next_page_link_keeps_the_filter_and_reads_back() -> None:
    """The link's query string has the filled fields and the position, and gives them back."""
    key = MessageKey(created_at=NOW, id=7)
    chosen = QueueFilter.read({"status": "failed", "recipient": "ola@sklep.pl"}, now=NOW)

    query = chosen.query(after=key)
    again = QueueFilter.read(dict(pair.split("=") for pair in query.split("&")), now=NOW)

    assert f"status=failed&recipient=ola%40sklep.pl&after={key.token}" == query
    assert key == again.after
    assert "status=failed&recipient=ola%40sklep.pl" == chosen.query()


def test_wrong_input_is_a_problem_of_its_field() -> None:
    """An unknown status, a since that is neither an age nor a time, a made-up position: each
    is a problem of its own field, and such a filter selects nothing."""
    chosen = QueueFilter.read({"status": "lost", "since": "wczoraj", "after": "x"}, now=NOW)

    assert {"status", "since", "after"} == set(chosen.problems)
    with pytest.raises(ValueError, match="problems"):
        chosen.selection(now=NOW)
