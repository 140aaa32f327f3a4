"""Provider presets are read from TOML data and checked; mistakes in the data are named."""

from __future__ import annotations

import pytest

from worker.errors import ConfigurationError, InvalidProfile
from worker.presets import parse_presets, require_preset

PRESETS = """
[wp]
title = "Poczta WP"
host = "smtp.wp.pl"
port = 465
encryption = "ssl"
login_rule = "local_part"
daily_cap = 300
hint = "Switch on access for mail programs."
source = "ISPDB [V]"

[gmail]
title = "Gmail"
host = "smtp.gmail.com"
port = 465
encryption = "ssl"
other_ports = [587]
login_rule = "full_address"
max_recipients_per_message = 100
strip_password_spaces = true
hint = "Use an app password."
source = "support.google.com [V]"
"""


def test_parses_every_field_and_names_each_preset() -> None:
    """Each table becomes a preset named by its key, with the values of the file."""
    presets = parse_presets(PRESETS, source="test")
    assert list(presets) == ["wp", "gmail"]
    gmail = presets["gmail"]
    assert (
        gmail.name,
        gmail.host,
        gmail.port,
        gmail.encryption,
        gmail.login_rule,
    ) == ("gmail", "smtp.gmail.com", 465, "ssl", "full_address")
    assert gmail.ports == (465, 587)
    assert (
        gmail.max_recipients_per_message,
        gmail.strip_password_spaces,
        gmail.daily_cap,
    ) == (100, True, None)
    assert presets["wp"].daily_cap == 300


def test_an_unknown_field_is_named() -> None:
    """A misspelt field is an error naming the preset and the field, not silently ignored."""
    text = PRESETS.replace('host = "smtp.wp.pl"', 'host = "smtp.wp.pl"\nhots = "x"')
    with pytest.raises(ConfigurationError, match=r"preset 'wp': hots"):
        parse_presets(text, source="test")


def test_a_preset_without_encryption_is_refused() -> None:
    """Providers never take mail unencrypted, so a preset cannot say encryption = none."""
    text = PRESETS.replace('encryption = "ssl"', 'encryption = "none"', 1)
    with pytest.raises(ConfigurationError, match=r"preset 'wp': encryption"):
        parse_presets(text, source="test")


def test_a_preset_must_cite_its_source() -> None:
    """Every preset says where its facts come from."""
    text = PRESETS.replace('source = "ISPDB [V]"', "")
    with pytest.raises(ConfigurationError, match=r"preset 'wp': source"):
        parse_presets(text, source="test")


def test_broken_toml_is_reported_with_the_file() -> None:
    """A syntax error names the file it is in."""
    with pytest.raises(ConfigurationError, match=r"providers\.toml is not valid TOML"):
        parse_presets("[wp\n", source="providers.toml")


def test_an_unknown_preset_lists_the_known_ones() -> None:
    """Asking for a preset that does not exist says which ones do."""
    presets = parse_presets(PRESETS, source="test")
    with pytest.raises(InvalidProfile) as caught:
        require_preset("wpp", presets)
    assert caught.value.problems == [
        "unknown preset 'wpp'; did you mean 'wp'? known presets: gmail, wp"
    ]


def test_preset_names_ignore_case() -> None:
    """``WP`` and ``Gmail`` name the presets ``wp`` and ``gmail``, as people type them."""
    presets = parse_presets(PRESETS, source="test")
    assert ("wp", "gmail") == (
        require_preset("WP", presets).name,
        require_preset(" Gmail ", presets).name,
    )


def test_an_unknown_preset_far_from_any_lists_them_without_a_guess() -> None:
    """No near name: no guess, only the known ones."""
    presets = parse_presets(PRESETS, source="test")
    with pytest.raises(InvalidProfile) as caught:
        require_preset("exchange", presets)
    assert ["unknown preset 'exchange'; known presets: gmail, wp"] == caught.value.problems
