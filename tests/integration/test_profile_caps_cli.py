"""``mailworker profiles``: send caps end to end, and the delivery state that ``show`` reports.

The tests are plain functions, because each command runs its own ``asyncio.run``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.kit.database import run_sql
from worker.cli import main

CAPS = ("daily_cap", "daily_recipient_cap", "per_minute_cap", "max_recipients_per_message")
GMAIL_APP_PASSWORD = "pvli anpr lvvr nrrn"
PAUSE_FIELDS = ("paused_until", "pause_reason", "pause_hint", "pause_count")
REASON = "535 5.7.8 Authentication credentials invalid"
HINT = "Check that access for mail programs is switched on in WP Poczta's settings."


def _run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**env, "APP_PASSWORD": GMAIL_APP_PASSWORD})


def _ok(env: dict[str, str], *args: str) -> Result:
    result = _run(env, *args)
    assert 0 == result.exit_code, result.output
    return result


def _add_workspace(env: dict[str, str], name: str = "firma", *options: str) -> Result:
    return _ok(
        env,
        *["profiles", "add", name, "--preset", "gmail-workspace", "--from", "jan@firma.pl"],
        *["--password-env", "APP_PASSWORD", *options],
    )


def _show(env: dict[str, str], name: str = "firma") -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(_ok(env, "profiles", "show", name, "--json").stdout)
    return shown


def _caps(view: dict[str, Any]) -> dict[str, Any]:
    return {name: view[name] for name in CAPS}


def _text_fields(output: str) -> dict[str, str]:
    """``show`` as text: the first word of each line is the key, the rest its value."""
    return dict((*line.split(None, 1), "")[:2] for line in output.splitlines())


# --- caps ------------------------------------------------------------------------------------


def test_a_preset_fills_the_caps_and_show_reports_them(cli_env: dict[str, str]) -> None:
    """gmail-workspace gives 2,000 messages and 10,000 recipients a day, 100 per message."""
    _add_workspace(cli_env)
    expected = {
        "daily_cap": 2000,
        "daily_recipient_cap": 10000,
        "per_minute_cap": None,
        "max_recipients_per_message": 100,
    }
    assert expected == _caps(_show(cli_env))
    [listed] = json.loads(_ok(cli_env, "profiles", "list", "--json").stdout)
    assert expected == _caps(listed)
    shown = _text_fields(_ok(cli_env, "profiles", "show", "firma").stdout)
    assert {"daily_recipient_cap": "10000", "max_recipients_per_message": "100"} == {
        key: shown[key] for key in ("daily_recipient_cap", "max_recipients_per_message")
    }


def test_add_options_override_the_presets_caps(cli_env: dict[str, str]) -> None:
    """Each cap option sets its cap; its --no-... twin removes the preset's cap."""
    _add_workspace(
        cli_env,
        "firma",
        *["--daily-recipient-cap", "500", "--per-minute-cap", "20"],
        *["--no-max-recipients-per-message", "--no-daily-cap"],
    )
    assert {
        "daily_cap": None,
        "daily_recipient_cap": 500,
        "per_minute_cap": 20,
        "max_recipients_per_message": None,
    } == _caps(_show(cli_env))


def test_edit_changes_only_the_given_caps(cli_env: dict[str, str]) -> None:
    """edit sets or removes one cap, names it as changed and leaves the others as they were."""
    _add_workspace(cli_env)
    edited = _ok(cli_env, "profiles", "edit", "firma", "--per-minute-cap", "5")
    assert "updated profile 'firma' (per_minute_cap: 5):" in edited.stdout
    edited = _ok(
        cli_env,
        *["profiles", "edit", "firma", "--no-daily-recipient-cap"],
        *["--max-recipients-per-message", "50"],
    )
    assert (
        "updated profile 'firma' (daily_recipient_cap: none, max_recipients_per_message: 50):"
        in (edited.stdout)
    )
    assert {
        "daily_cap": 2000,
        "daily_recipient_cap": None,
        "per_minute_cap": 5,
        "max_recipients_per_message": 50,
    } == _caps(_show(cli_env))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--per-minute-cap", "0"], "Error: per-minute cap 0 must be at least 1"),
        (["--daily-recipient-cap", "-1"], "Error: daily recipient cap -1 must be at least 1"),
        (
            ["--max-recipients-per-message", "0"],
            "Error: max recipients per message 0 must be at least 1",
        ),
    ],
)
def test_a_cap_below_one_is_refused(
    cli_env: dict[str, str], options: list[str], expected: str
) -> None:
    """A cap of 0 or less is refused on one line naming the cap; the stored cap stays."""
    _add_workspace(cli_env)
    result = _run(cli_env, "profiles", "edit", "firma", *options)
    assert (2, [f"{expected} (leave it empty for no cap)"]) == (
        result.exit_code,
        result.output.strip().splitlines(),
    )
    assert 100 == _show(cli_env)["max_recipients_per_message"]


@pytest.mark.parametrize(
    "cap", ["daily-recipient-cap", "per-minute-cap", "max-recipients-per-message"]
)
def test_a_cap_and_its_no_option_together_are_refused(cli_env: dict[str, str], cap: str) -> None:
    """--X N with --no-X is a usage error, before anything is read or stored."""
    result = _run(cli_env, "profiles", "edit", "firma", f"--{cap}", "5", f"--no-{cap}")
    assert 2 == result.exit_code
    assert f"give --{cap} or --no-{cap}, not both" in result.output


def test_a_cap_above_the_providers_limit_warns(cli_env: dict[str, str]) -> None:
    """A cap above what the provider allows is stored, with a warning on standard error."""
    added = _add_workspace(cli_env, "firma", "--max-recipients-per-message", "150")
    assert (
        "warning: Google Workspace (company account on smtp.gmail.com) allows about 100"
        " recipients per message; a max recipients per message of 150 may get the account blocked"
    ) in added.stderr
    assert 150 == _show(cli_env)["max_recipients_per_message"]


def test_apply_sets_and_removes_caps(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """A profiles file sets each cap; "none" removes the preset's; a second apply is unchanged."""
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text(
        """
[profiles.firma]
preset = "gmail-workspace"
from_address = "jan@firma.pl"
password_env = "APP_PASSWORD"
daily_recipient_cap = 3000
per_minute_cap = 10
max_recipients_per_message = "none"
""",
        encoding="utf-8",
    )
    assert ["created    firma", "'firma' is the default profile"] == _ok(
        cli_env, "profiles", "apply", str(profiles_file)
    ).stdout.splitlines()
    assert {
        "daily_cap": 2000,
        "daily_recipient_cap": 3000,
        "per_minute_cap": 10,
        "max_recipients_per_message": None,
    } == _caps(_show(cli_env))
    again = _ok(cli_env, "profiles", "apply", str(profiles_file))
    assert ["unchanged  firma"] == again.stdout.splitlines()


# --- delivery state --------------------------------------------------------------------------


def test_show_says_an_active_profile_is_active(cli_env: dict[str, str]) -> None:
    """A new profile is active, with no pause, in text and in JSON."""
    _add_workspace(cli_env)
    shown = _show(cli_env)
    assert {
        "state": "active",
        "paused_until": None,
        "pause_reason": None,
        "pause_hint": None,
        "pause_count": 0,
    } == {key: shown[key] for key in ("state", *PAUSE_FIELDS)}
    text_view = _text_fields(_ok(cli_env, "profiles", "show", "firma").stdout)
    assert "active" == text_view["state"]
    assert [] == [key for key in PAUSE_FIELDS if key in text_view]


def test_show_says_until_when_and_why_a_profile_is_paused(
    cli_env: dict[str, str], database_url: str
) -> None:
    """A paused profile shows its state, until when (UTC), the reason and the hint."""
    _add_workspace(cli_env)
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    run_sql(
        database_url,
        "UPDATE mail.profile SET paused_until = :until, pause_reason = :reason,"
        " pause_hint = :hint, pause_count = 2 WHERE name = 'firma'",
        until=until,
        reason=REASON,
        hint=HINT,
    )
    at = until.strftime("%Y-%m-%dT%H:%M:%SZ")

    shown = _show(cli_env)
    assert {
        "state": "paused",
        "paused_until": at,
        "pause_reason": REASON,
        "pause_hint": HINT,
        "pause_count": 2,
    } == {key: shown[key] for key in ("state", *PAUSE_FIELDS)}
    text_view = _text_fields(_ok(cli_env, "profiles", "show", "firma").stdout)
    assert {"state": f"paused until {at}: {REASON}", "pause_hint": HINT} == {
        key: text_view[key] for key in ("state", "pause_hint")
    }
    [listed] = json.loads(_ok(cli_env, "profiles", "list", "--json").stdout)
    assert ("paused", at) == (listed["state"], listed["paused_until"])


def test_a_pause_that_ended_is_active_again(cli_env: dict[str, str], database_url: str) -> None:
    """Once paused_until has passed the profile is active; the last pause stays on record."""
    _add_workspace(cli_env)
    run_sql(
        database_url,
        "UPDATE mail.profile SET paused_until = now() - interval '1 minute',"
        " pause_reason = :reason, pause_count = 1 WHERE name = 'firma'",
        reason=REASON,
    )
    shown = _show(cli_env)
    assert ("active", REASON) == (shown["state"], shown["pause_reason"])
    assert "active" == _text_fields(_ok(cli_env, "profiles", "show", "firma").stdout)["state"]


def test_show_says_a_disabled_profile_is_disabled(
    cli_env: dict[str, str], database_url: str
) -> None:
    """--disable makes the state disabled; a pause still running is mentioned beside it."""
    _add_workspace(cli_env, "firma", "--disable")
    assert "disabled" == _show(cli_env)["state"]
    assert "disabled" == _text_fields(_ok(cli_env, "profiles", "show", "firma").stdout)["state"]

    until = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)
    run_sql(
        database_url,
        "UPDATE mail.profile SET paused_until = :until, pause_reason = :reason"
        " WHERE name = 'firma'",
        until=until,
        reason=REASON,
    )
    at = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "disabled" == _show(cli_env)["state"]
    assert (
        f"disabled; also paused until {at}: {REASON}"
        == (_text_fields(_ok(cli_env, "profiles", "show", "firma").stdout)["state"])
    )
