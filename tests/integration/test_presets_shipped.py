"""The presets shipped in config/providers.toml hold the documented provider facts."""

from __future__ import annotations

import pytest

from worker.presets import load_presets
from worker.profiles import build_fields, profile_problems

PRESETS = load_presets()


@pytest.mark.parametrize(
    ("name", "host", "port", "encryption", "login_rule"),
    [
        ("wp", "smtp.wp.pl", 465, "ssl", "local_part"),
        ("o2", "poczta.o2.pl", 465, "ssl", "local_part"),
        ("onet", "smtp.poczta.onet.pl", 465, "ssl", "full_address"),
        ("interia", "poczta.interia.pl", 465, "ssl", "full_address"),
        ("gmail", "smtp.gmail.com", 465, "ssl", "full_address"),
        ("gmail-workspace", "smtp.gmail.com", 465, "ssl", "full_address"),
        ("office365", "smtp.office365.com", 587, "starttls", "full_address"),
        ("outlook", "smtp-mail.outlook.com", 587, "starttls", "full_address"),
    ],
)
def test_each_provider_has_its_server_and_login_rule(
    name: str, host: str, port: int, encryption: str, login_rule: str
) -> None:
    """Every required provider is there with the server, port, TLS mode and login rule."""
    preset = PRESETS[name]
    assert (host, port, encryption, login_rule) == (
        preset.host,
        preset.port,
        preset.encryption,
        preset.login_rule,
    )


def test_the_limits_that_providers_publish() -> None:
    """Gmail's consumer and Workspace caps differ; Gmail takes 100 recipients; M365 30/min."""
    gmail, workspace, office = PRESETS["gmail"], PRESETS["gmail-workspace"], PRESETS["office365"]
    assert (gmail.daily_cap, workspace.daily_cap) == (500, 2000)
    assert (gmail.max_recipients_per_message, workspace.max_recipients_per_message) == (100, 100)
    assert (office.messages_per_minute, office.recipients_per_day) == (30, 10000)
    assert 587 in gmail.ports


def test_hints_say_what_to_switch_on() -> None:
    """WP's hint asks to switch on mail-program access; Gmail's asks for an app password."""
    assert "access for mail programs" in PRESETS["wp"].hint
    assert "app password" in PRESETS["gmail"].hint
    assert PRESETS["gmail"].strip_password_spaces
    assert not PRESETS["wp"].strip_password_spaces


def test_every_fact_has_a_source_and_every_preset_hints() -> None:
    """Each preset cites sources with a verification mark, and has both hints."""
    for preset in PRESETS.values():
        assert any(mark in preset.source for mark in ("[V]", "[O]", "[U]")), preset.name
        assert preset.hint, preset.name
        assert preset.auth_failure_hint, preset.name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_makes_a_valid_profile(name: str) -> None:
    """A profile made from a preset and an address alone passes validation as it is."""
    fields = build_fields({"name": name, "from_address": "jan@example.pl"}, PRESETS[name])
    login = fields.login or ""
    assert "@" in login if PRESETS[name].login_rule == "full_address" else "@" not in login
    assert profile_problems(fields, has_password=True, presets=PRESETS) == []
