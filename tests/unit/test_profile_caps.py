"""Profile caps: presets fill them, a profile overrides them, mistakes and doubts are named.

Also the recipients-per-message check that enqueue runs against the profile (pure, no I/O).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.kit.factories import make_profile
from worker.outbox import OutboxMessage, recipient_count, recipient_limit_problems
from worker.presets import parse_presets
from worker.profiles import (
    Profile,
    ProfileFields,
    build_fields,
    parse_profiles_file,
    profile_problems,
    profile_warnings,
)

PRESETS = parse_presets(
    """
[workspace]
title = "Google Workspace"
host = "smtp.gmail.com"
port = 465
encryption = "ssl"
login_rule = "full_address"
daily_cap = 2000
recipients_per_day = 10000
max_recipients_per_message = 100
hint = "Use an app password."
source = "test"

[office]
title = "Microsoft 365"
host = "smtp.office365.com"
port = 587
encryption = "starttls"
login_rule = "full_address"
messages_per_minute = 30
hint = "Switch on SMTP AUTH."
source = "test"
""",
    source="test",
)
CAPS = ("daily_cap", "daily_recipient_cap", "per_minute_cap", "max_recipients_per_message")


def _caps(fields: ProfileFields) -> dict[str, int | None]:
    return {name: getattr(fields, name) for name in CAPS}


def _workspace(**given: Any) -> ProfileFields:
    return build_fields(
        {"name": "firma", "from_address": "jan@firma.pl", **given}, PRESETS["workspace"]
    )


def test_a_preset_fills_every_cap_from_the_providers_limits() -> None:
    """recipients_per_day, messages_per_minute and max_recipients_per_message become caps."""
    office = build_fields({"name": "o365", "from_address": "jan@firma.pl"}, PRESETS["office"])
    assert {
        "workspace": {
            "daily_cap": 2000,
            "daily_recipient_cap": 10000,
            "per_minute_cap": None,
            "max_recipients_per_message": 100,
        },
        "office": {
            "daily_cap": None,
            "daily_recipient_cap": None,
            "per_minute_cap": 30,
            "max_recipients_per_message": None,
        },
    } == {"workspace": _caps(_workspace()), "office": _caps(office)}


def test_the_profile_overrides_the_presets_caps() -> None:
    """A given cap wins over the preset's, and a cap given as None removes the preset's."""
    fields = _workspace(daily_recipient_cap=500, max_recipients_per_message=None, per_minute_cap=5)
    assert {
        "daily_cap": 2000,
        "daily_recipient_cap": 500,
        "per_minute_cap": 5,
        "max_recipients_per_message": None,
    } == _caps(fields)


def test_without_a_preset_there_are_no_caps() -> None:
    """A profile made without a preset has no cap unless one is given."""
    fields = build_fields(
        {"name": "relay", "from_address": "jan@firma.pl", "host": "smtp.firma.pl"}, None
    )
    assert dict.fromkeys(CAPS) == _caps(fields)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("daily_recipient_cap", 0, "daily recipient cap 0 must be at least 1"),
        ("per_minute_cap", -3, "per-minute cap -3 must be at least 1"),
        ("max_recipients_per_message", 0, "max recipients per message 0 must be at least 1"),
        ("daily_cap", 2**31, f"daily cap {2**31} must be at most {2**31 - 1}"),
        ("per_minute_cap", 2**31, f"per-minute cap {2**31} must be at most {2**31 - 1}"),
    ],
)
def test_each_cap_must_be_positive_and_fit_the_column(
    field: str, value: int, expected: str
) -> None:
    """A cap below 1 or above the integer column is one problem naming the cap and the value."""
    fields = dataclasses.replace(_workspace(), **{field: value})
    problems = profile_problems(fields, has_password=True, presets=PRESETS)
    assert [f"{expected} (leave it empty for no cap)"] == problems


def test_caps_of_one_are_valid() -> None:
    """The smallest cap, 1, is a working setting."""
    fields = dataclasses.replace(_workspace(), **dict.fromkeys(CAPS, 1))
    assert [] == profile_problems(fields, has_password=True, presets=PRESETS)


def test_a_cap_above_the_providers_limit_is_a_warning() -> None:
    """Caps above the provider's limits are accepted with a warning naming each one."""
    fields = _workspace(daily_recipient_cap=20000, max_recipients_per_message=150)
    assert [
        "Google Workspace allows about 10000 recipients a day;"
        " a daily recipient cap of 20000 may get the account blocked",
        "Google Workspace allows about 100 recipients per message;"
        " a max recipients per message of 150 may get the account blocked",
    ] == profile_warnings(fields, PRESETS["workspace"])


def test_a_profiles_file_sets_and_removes_caps() -> None:
    """Each cap is a key of a profiles file; "none" removes the preset's cap."""
    entries = parse_profiles_file(
        """
[profiles.firma]
preset = "workspace"
from_address = "jan@firma.pl"
daily_recipient_cap = 5000
per_minute_cap = 20
max_recipients_per_message = "none"
""",
        source="profiles.toml",
    )
    given = entries["firma"].given_fields()
    assert {
        "from_address": "jan@firma.pl",
        "daily_recipient_cap": 5000,
        "per_minute_cap": 20,
        "max_recipients_per_message": None,
    } == given
    fields = build_fields({"name": "firma", **given}, PRESETS["workspace"])
    assert {
        "daily_cap": 2000,
        "daily_recipient_cap": 5000,
        "per_minute_cap": 20,
        "max_recipients_per_message": None,
    } == _caps(fields)


# --- recipients per message at enqueue -------------------------------------------------------


def _profile(**caps: int | None) -> Profile:
    return make_profile(
        name="gmail",
        from_address="jan.kowalski@gmail.com",
        host="smtp.gmail.com",
        login="jan.kowalski@gmail.com",
        preset="gmail",
        **caps,
    )


def _addresses(count: int, start: int = 0) -> tuple[str, ...]:
    return tuple(f"r{number}@example.com" for number in range(start, start + count))


def test_to_cc_and_bcc_count_together_each_address_once() -> None:
    """Recipients are the distinct addresses of To, Cc and Bcc, ignoring case (one RCPT each)."""
    message = OutboxMessage(
        to=("a@example.com", "b@example.com"),
        cc=("A@example.com", "c@example.com"),
        bcc=("d@example.com",),
    )
    assert 4 == recipient_count(message)


def test_the_limit_itself_is_allowed_and_one_more_is_not() -> None:
    """Gmail's 100: a message with 100 recipients passes, 101 is refused with the numbers."""
    profile = _profile(max_recipients_per_message=100)
    at_limit = OutboxMessage(to=_addresses(40), cc=_addresses(30, 40), bcc=_addresses(30, 70))
    over = dataclasses.replace(at_limit, bcc=_addresses(31, 70))
    refused = (
        "the message has 101 recipients (to, cc and bcc together); profile 'gmail'"
        " allows at most 100 per message: send it as several messages"
    )
    assert ([], [refused]) == (
        recipient_limit_problems(at_limit, profile),
        recipient_limit_problems(over, profile),
    )


def test_more_recipients_than_the_daily_recipient_cap_is_refused() -> None:
    """A message that could never fit into a day's recipient cap is refused at enqueue."""
    profile = _profile(daily_recipient_cap=5)
    assert [
        "the message has 6 recipients (to, cc and bcc together); profile 'gmail' allows at"
        " most 5 a day (its daily recipient cap): send it as several messages"
    ] == recipient_limit_problems(OutboxMessage(to=_addresses(6)), profile)


def test_a_profile_without_limits_takes_any_number() -> None:
    """No max_recipients_per_message and no recipient cap: nothing is refused."""
    assert [] == recipient_limit_problems(OutboxMessage(to=_addresses(1000)), _profile())
