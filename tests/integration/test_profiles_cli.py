"""``mailworker profiles ...`` end to end: the real CLI against a database of the test's own.

The tests are plain functions, because each command runs its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from worker.cli import main
from worker.resources import config_dir

COMMON = [
    "--display-name",
    "Comarch DMS - powiadomienia",
    "--description",
    "Konto do wysyłania powiadomień Comarch DMS",
]


@dataclasses.dataclass(frozen=True)
class GuideExample:
    """One example of the guide: the account as filled in there, and the password as stored."""

    name: str
    preset: str
    address: str
    host: str
    port: int
    login: str
    typed_password: str
    stored_password: str


GUIDE_EXAMPLES = [
    GuideExample(
        "comarch-dms-wp",
        "wp",
        "jankowalski@wp.pl",
        "smtp.wp.pl",
        587,
        "jankowalski",
        "Konwalia369!",
        "Konwalia369!",
    ),
    GuideExample(
        "comarch-dms-onet",
        "onet",
        "annanowak@op.pl",
        "smtp.poczta.onet.pl",
        465,
        "annanowak@op.pl",
        "Pierwiosnek479%",
        "Pierwiosnek479%",
    ),
    GuideExample(
        "comarch-dms-gmail",
        "gmail",
        "jan.kowalski@gmail.com",
        "smtp.gmail.com",
        465,
        "jan.kowalski@gmail.com",
        "pvli anpr lvvr nrrn",
        "pvlianprlvvrnrrn",
    ),
]
WP_PASSWORD = "Konwalia369!"


def _run(env: dict[str, str], *args: str, input: str | None = None, **extra_env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**env, **extra_env}, input=input)


def _ok(env: dict[str, str], *args: str, input: str | None = None, **extra_env: str) -> Result:
    result = _run(env, *args, input=input, **extra_env)
    assert result.exit_code == 0, result.output
    return result


def _failed(env: dict[str, str], *args: str, input: str | None = None, **extra_env: str) -> str:
    result = _run(env, *args, input=input, **extra_env)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


def _add_wp(env: dict[str, str], name: str = "comarch-dms-wp", *extra: str) -> Result:
    return _ok(
        env,
        *["profiles", "add", name, "--preset", "wp", "--from", "jankowalski@wp.pl"],
        *["--reply-to", "jankowalski@wp.pl", *COMMON],
        *["--port", "587", "--encryption", "auto", "--login", "jankowalski"],
        *["--password-stdin", *extra],
        input=f"{WP_PASSWORD}\n",
    )


def _show(env: dict[str, str], name: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(_ok(env, "profiles", "show", name, "--json").stdout)
    return shown


def _rows(database_url: str, sql: str, **params: Any) -> Sequence[Any]:
    async def fetch() -> Sequence[Any]:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as connection:
                return (await connection.execute(text(sql), params)).all()
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


def _stored_password(database_url: str, secret_key: str, name: str) -> str:
    rows = _rows(
        database_url, "SELECT password_encrypted FROM mail.profile WHERE name = :n", n=name
    )
    return Fernet(secret_key.encode()).decrypt(bytes(rows[0][0])).decode()


# --- the guide's examples --------------------------------------------------------------------


@pytest.mark.parametrize("example", GUIDE_EXAMPLES, ids=lambda example: example.preset)
def test_the_guide_examples_can_be_added(
    cli_env: dict[str, str], database_url: str, secret_key: str, example: GuideExample
) -> None:
    """Each example of the guide is created with its preset and stored as the guide fills it."""
    added = _ok(
        cli_env,
        *["profiles", "add", example.name, "--preset", example.preset],
        *["--from", example.address, "--reply-to", example.address, *COMMON],
        *["--host", example.host, "--port", str(example.port), "--encryption", "auto"],
        *["--auth", "login", "--login", example.login, "--password-env", "GUIDE_PASSWORD"],
        GUIDE_PASSWORD=example.typed_password,
    )
    assert f"added profile {example.name!r}" in added.stdout
    assert f"hint ({example.preset}):" in added.stdout

    shown = _show(cli_env, example.name)
    assert {
        "enabled": True,
        "from_address": example.address,
        "display_name": "Comarch DMS - powiadomienia",
        "reply_to": example.address,
        "description": "Konto do wysyłania powiadomień Comarch DMS",
        "server_type": "smtp",
        "host": example.host,
        "port": example.port,
        "encryption": "auto",
        "auth_method": "login",
        "login": example.login,
        "password": "set",
        "preset": example.preset,
        "is_default": True,
    }.items() <= shown.items()
    stored = _stored_password(database_url, secret_key, example.name)
    assert stored == example.stored_password


def test_the_example_file_creates_all_three_then_changes_nothing(
    cli_env: dict[str, str], database_url: str, secret_key: str
) -> None:
    """apply creates the guide's profiles; applying the same file again leaves them unchanged."""
    example = str(config_dir() / "profiles.example.toml")
    passwords = {
        "WP_PASSWORD": WP_PASSWORD,
        "ONET_PASSWORD": "Pierwiosnek479%",
        "GMAIL_APP_PASSWORD": "pvli anpr lvvr nrrn",
    }
    first = _ok(cli_env, "profiles", "apply", example, **passwords)
    assert "warning" not in first.stderr  # the shipped example follows its providers' advice
    assert first.stdout.splitlines() == [
        "created    comarch-dms-wp",
        "created    comarch-dms-onet",
        "created    comarch-dms-gmail",
        "'comarch-dms-wp' is the default profile",
    ]
    assert _stored_password(database_url, secret_key, "comarch-dms-gmail") == "pvlianprlvvrnrrn"

    again = _ok(cli_env, "profiles", "apply", example, **passwords)
    assert again.stdout.splitlines() == [
        "unchanged  comarch-dms-wp",
        "unchanged  comarch-dms-onet",
        "unchanged  comarch-dms-gmail",
    ]


# --- passwords -------------------------------------------------------------------------------


def test_the_table_never_holds_the_plain_password(
    cli_env: dict[str, str], database_url: str, secret_key: str
) -> None:
    """The stored row, read raw, contains no form of the password; only the key reveals it."""
    _add_wp(cli_env)
    token, row_text = _rows(
        database_url,
        "SELECT password_encrypted, p::text FROM mail.profile p WHERE name = 'comarch-dms-wp'",
    )[0]
    token = bytes(token)
    assert WP_PASSWORD.encode() not in token
    assert WP_PASSWORD not in row_text
    assert WP_PASSWORD.encode().hex() not in row_text  # not stored as plain bytea either
    assert Fernet(secret_key.encode()).decrypt(token).decode() == WP_PASSWORD


def test_output_and_logs_never_show_the_password(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """No command prints or logs the password, even at debug level and when a command fails."""
    env = {**cli_env, "MAILWORKER_LOG_LEVEL": "debug"}
    password_file = tmp_path / "profiles.toml"
    shutil.copy(config_dir() / "profiles.example.toml", password_file)
    results = [
        _add_wp(env),
        _ok(env, "profiles", "list"),
        _ok(env, "profiles", "list", "--json"),
        _ok(env, "profiles", "show", "comarch-dms-wp"),
        _ok(env, "profiles", "show", "comarch-dms-wp", "--json"),
        _ok(env, "profiles", "edit", "comarch-dms-wp", "--password-stdin", input="Nowe-Haslo-1\n"),
        _run(
            env,
            "profiles",
            "edit",
            "comarch-dms-wp",
            "--port",
            "0",
            "--password-stdin",
            input=f"{WP_PASSWORD}\n",
        ),
        _run(
            env,
            "profiles",
            "apply",
            str(password_file),
            WP_PASSWORD=WP_PASSWORD,
            ONET_PASSWORD=WP_PASSWORD,
        ),  # fails: GMAIL_APP_PASSWORD is not set
    ]
    everything = "\n".join(result.stdout + result.stderr for result in results)
    assert "profile_added" in results[0].stderr  # the logs are really in what is searched
    assert re.search(r"^password +set$", results[3].stdout, re.MULTILINE)
    assert "GMAIL_APP_PASSWORD" in results[7].output
    assert WP_PASSWORD not in everything
    assert "Nowe-Haslo-1" not in everything


def test_the_password_is_asked_for_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str], database_url: str, secret_key: str
) -> None:
    """On a terminal, add asks twice at a hidden prompt and stores what was typed."""
    monkeypatch.setattr("worker.cli.profiles._stdin_is_terminal", lambda: True)
    result = _ok(
        cli_env,
        *["profiles", "add", "wp", "--preset", "wp", "--from", "jankowalski@wp.pl"],
        input=f"{WP_PASSWORD}\n{WP_PASSWORD}\n",
    )
    assert "Password for jankowalski at smtp.wp.pl" in result.stdout
    assert WP_PASSWORD not in result.stdout
    assert _stored_password(database_url, secret_key, "wp") == WP_PASSWORD


def test_without_a_terminal_a_password_must_be_passed(cli_env: dict[str, str]) -> None:
    """With no prompt possible and no password option, add refuses and says how to give one."""
    output = _failed(cli_env, "profiles", "add", "wp", "--preset", "wp", "--from", "jan@wp.pl")
    assert "needs a password" in output
    assert "--password-stdin" in output


def test_there_is_no_password_option_taking_a_value(cli_env: dict[str, str]) -> None:
    """``--password VALUE`` does not exist: a password on the command line would be visible."""
    result = _run(
        cli_env,
        "profiles",
        "add",
        "wp",
        "--preset",
        "wp",
        "--from",
        "jankowalski@wp.pl",
        "--password",
        WP_PASSWORD,
    )
    assert result.exit_code == 2
    assert "No such option '--password'" in result.output


def test_a_missing_password_variable_is_named(cli_env: dict[str, str]) -> None:
    """--password-env naming an unset variable fails with the variable's name."""
    output = _failed(
        cli_env,
        "profiles",
        "add",
        "wp",
        "--preset",
        "wp",
        "--from",
        "jankowalski@wp.pl",
        "--password-env",
        "NO_SUCH_VARIABLE",
    )
    assert "environment variable NO_SUCH_VARIABLE is not set" in output


# --- validation through the CLI --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            ["--preset", "wpp"],
            "unknown preset 'wpp'; did you mean 'wp'? known presets: gmail, gmail-workspace,",
        ),
        (["--preset", "wp", "--auth", "oauth2"], "authentication oauth2 needs a provider"),
        (["--preset", "wp", "--encryption", "ssl", "--port", "587"], "port 587 expects STARTTLS"),
        (
            ["--preset", "wp", "--login", "jankowalski@wp.pl"],
            "'jankowalski', not 'jankowalski@wp.pl'",
        ),
        (["--preset", "wp", "--encryption", "none", "--port", "25"], "would travel unencrypted"),
    ],
)
def test_a_wrong_profile_is_refused_on_one_line(
    cli_env: dict[str, str], options: list[str], expected: str
) -> None:
    """Mistakes end the command with a non-zero code and one clear line; nothing is stored."""
    output = _failed(
        cli_env,
        "profiles",
        "add",
        "wp",
        "--from",
        "jankowalski@wp.pl",
        *options,
        "--password-stdin",
        input="x1234\n",
    )
    assert expected in output
    assert len(output.strip().splitlines()) == 1, output
    assert "no profiles yet" in _ok(cli_env, "profiles", "list").stdout


def test_a_name_is_taken_once(cli_env: dict[str, str]) -> None:
    """Adding a profile under an existing name is refused, pointing at edit."""
    _add_wp(cli_env)
    result = _run(
        cli_env,
        "profiles",
        "add",
        "comarch-dms-wp",
        "--preset",
        "wp",
        "--from",
        "a@wp.pl",
        "--password-stdin",
        input="x1234\n",
    )
    assert result.exit_code != 0
    assert "exists already; change it with `mailworker profiles edit`" in result.output


# --- list, show, edit ------------------------------------------------------------------------


def test_list_shows_a_table_with_the_default_marked(cli_env: dict[str, str]) -> None:
    """The table has one row per profile: name, default mark, enabled, from, server, TLS, auth."""
    _add_wp(cli_env)
    _ok(
        cli_env,
        "profiles",
        "add",
        "relay",
        "--from",
        "powiadomienia@firma.pl",
        "--host",
        "10.0.0.5",
        "--port",
        "25",
        "--encryption",
        "none",
        "--auth",
        "none",
        "--disable",
    )
    lines = _ok(cli_env, "profiles", "list").stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "DEFAULT",
        "ENABLED",
        "FROM",
        "SERVER",
        "ENCRYPTION",
        "AUTH",
    ]
    assert lines[1].split() == [
        "comarch-dms-wp",
        "*",
        "yes",
        "jankowalski@wp.pl",
        "smtp.wp.pl:587",
        "auto",
        "login",
    ]
    assert (lines[2].split()) == [
        "relay",
        "no",
        "powiadomienia@firma.pl",
        "10.0.0.5:25",
        "none",
        "none",
    ]
    listed = json.loads(_ok(cli_env, "profiles", "list", "--json").stdout)
    assert [(item["name"], item["password"]) for item in listed] == [
        ("comarch-dms-wp", "set"),
        ("relay", "not set"),
    ]


def test_show_prints_every_field_and_the_preset_hint(cli_env: dict[str, str]) -> None:
    """show lists each field, the password only as set, and what to switch on at WP."""
    _add_wp(cli_env)
    shown = _ok(cli_env, "profiles", "show", "comarch-dms-wp").stdout
    lines = dict((*line.split(None, 1), "")[:2] for line in shown.splitlines())
    assert {"smtp.wp.pl", "587", "auto", "jankowalski", "set", "yes", "wp"} <= set(lines.values())
    assert "access for mail programs" in lines["hint"]
    assert "password_encrypted" not in lines
    assert "no profile is named 'nope'" in _failed(cli_env, "profiles", "show", "nope")


def test_edit_changes_only_the_given_fields_and_checks_the_whole_profile(
    cli_env: dict[str, str],
) -> None:
    """edit changes what it is given, keeps the rest and refuses a result that would not work."""
    _add_wp(cli_env)
    before = _show(cli_env, "comarch-dms-wp")

    edited = _ok(cli_env, "profiles", "edit", "comarch-dms-wp", "--port", "465", "--no-daily-cap")
    assert "updated profile 'comarch-dms-wp' (port: 465, daily_cap: none)" in edited.stdout
    after = _show(cli_env, "comarch-dms-wp")
    assert {**before, "port": 465, "daily_cap": None, "updated_at": None} == {
        **after,
        "updated_at": None,
    }

    output = _failed(cli_env, "profiles", "edit", "comarch-dms-wp", "--encryption", "starttls")
    assert "port 465 expects implicit TLS, not starttls" in output
    assert _show(cli_env, "comarch-dms-wp")["encryption"] == "auto"
    assert "unchanged" in _ok(cli_env, "profiles", "edit", "comarch-dms-wp", "--port", "465").stdout


def test_edit_replaces_or_drops_the_password(
    cli_env: dict[str, str], database_url: str, secret_key: str
) -> None:
    """A new password replaces the old; switching to no authentication removes it."""
    _add_wp(cli_env)
    _ok(cli_env, "profiles", "edit", "comarch-dms-wp", "--password-stdin", input="Nowe-Haslo-1\n")
    assert _stored_password(database_url, secret_key, "comarch-dms-wp") == "Nowe-Haslo-1"

    output = _failed(cli_env, "profiles", "edit", "comarch-dms-wp", "--no-password")
    assert "needs a password" in output

    _ok(
        cli_env,
        "profiles",
        "edit",
        "comarch-dms-wp",
        "--auth",
        "none",
        "--port",
        "25",
        "--host",
        "relay.firma.pl",
        "--encryption",
        "starttls",
    )
    assert _show(cli_env, "comarch-dms-wp")["password"] == "not set"


# --- default and remove ----------------------------------------------------------------------


def test_set_default_moves_the_mark(cli_env: dict[str, str]) -> None:
    """The first profile is the default; set-default moves the mark, so one profile has it."""
    _add_wp(cli_env, "first")
    _add_wp(cli_env, "second")
    assert (
        _show(cli_env, "first")["is_default"],
        _show(cli_env, "second")["is_default"],
    ) == (True, False)
    _ok(cli_env, "profiles", "set-default", "second")
    assert (
        _show(cli_env, "first")["is_default"],
        _show(cli_env, "second")["is_default"],
    ) == (False, True)
    assert "no profile is named 'third'" in _failed(cli_env, "profiles", "set-default", "third")
    assert _show(cli_env, "second")["is_default"]  # the failed command changed nothing


def test_the_default_profile_is_removed_only_on_purpose(cli_env: dict[str, str]) -> None:
    """remove refuses the default profile without --force; other profiles just go."""
    _add_wp(cli_env, "first")
    _add_wp(cli_env, "second")
    output = _failed(cli_env, "profiles", "remove", "first")
    assert "not removing profile 'first': it is the default profile" in output
    assert "removed profile 'second'" in _ok(cli_env, "profiles", "remove", "second").stdout

    forced = _ok(cli_env, "profiles", "remove", "first", "--force")
    assert "there is no default profile now" in forced.stdout
    assert "no profiles yet" in _ok(cli_env, "profiles", "list").stdout


def test_a_profile_that_messages_wait_for_is_removed_only_on_purpose(
    cli_env: dict[str, str], database_url: str
) -> None:
    """remove refuses a profile that unsent outbox messages name, saying how many."""
    _add_wp(cli_env, "first")
    _add_wp(cli_env, "second")
    _rows(
        database_url,
        "INSERT INTO mail.outbox (profile, to_addrs) VALUES ('second', '{a@firma.pl}')"
        " RETURNING id",
    )
    output = _failed(cli_env, "profiles", "remove", "second")
    assert "1 unsent message(s) would go through it" in output
    _ok(cli_env, "profiles", "remove", "second", "--force")


# --- apply -----------------------------------------------------------------------------------


def test_apply_is_all_or_nothing(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """One bad profile in the file stops the whole file: the good ones are not created either."""
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text(
        """
[profiles.good]
preset = "onet"
from_address = "annanowak@op.pl"
password_env = "ONET_PASSWORD"

[profiles.bad]
preset = "wp"
from_address = "jankowalski@wp.pl"
encryption = "ssl"
port = 587
password_env = "WP_PASSWORD"
""",
        encoding="utf-8",
    )
    env = {"ONET_PASSWORD": "Pierwiosnek479%", "WP_PASSWORD": WP_PASSWORD}
    output = _failed(cli_env, "profiles", "apply", str(profiles_file), **env)
    assert "profile 'bad': port 587 expects STARTTLS" in output
    assert "no profiles yet" in _ok(cli_env, "profiles", "list").stdout


def test_apply_updates_what_changed_and_keeps_passwords(
    tmp_path: Path, cli_env: dict[str, str], database_url: str, secret_key: str
) -> None:
    """A changed field is updated; a profile without password_env keeps its stored password."""
    _add_wp(cli_env)
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text(
        """
[profiles.comarch-dms-wp]
preset = "wp"
from_address = "jankowalski@wp.pl"
display_name = "Comarch DMS - powiadomienia"
reply_to = "jankowalski@wp.pl"
description = "Konto do wysyłania powiadomień Comarch DMS"
""",
        encoding="utf-8",
    )
    result = _ok(cli_env, "profiles", "apply", str(profiles_file))
    assert result.stdout.splitlines() == ["updated    comarch-dms-wp (port, encryption)"]
    shown = _show(cli_env, "comarch-dms-wp")
    assert (shown["port"], shown["encryption"], shown["is_default"]) == (465, "ssl", True)
    assert _stored_password(database_url, secret_key, "comarch-dms-wp") == WP_PASSWORD


def test_apply_takes_an_oauth_profile_with_its_secret_from_the_environment(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """An OAuth profile in a profiles file: the app's secret comes from the variable the file
    names; applied again with the same secret, nothing changes; show never prints it."""
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text(
        """
[profiles.biuro]
preset = "office365"
from_address = "biuro@contoso.com"
auth_method = "oauth2"
oauth_client_id = "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11"
oauth_tenant = "0b7e5e8c-1d2f-4a3b-9c4d-5e6f7a8b9c0d"
oauth_client_secret_env = "BIURO_APP_SECRET"
""",
        encoding="utf-8",
    )
    secret = "Entra~sekret~aplikacji~77"

    first = _ok(cli_env, "profiles", "apply", str(profiles_file), BIURO_APP_SECRET=secret)
    again = _ok(cli_env, "profiles", "apply", str(profiles_file), BIURO_APP_SECRET=secret)

    assert "created    biuro" == first.stdout.splitlines()[0]
    assert ["unchanged  biuro"] == again.stdout.splitlines()
    shown = _show(cli_env, "biuro")
    expected = ("microsoft", "client_credentials", "set", "biuro@contoso.com")
    actual = (
        shown["oauth_provider"],
        shown["oauth_flow"],
        shown["oauth_credential"],
        shown["login"],
    )
    assert expected == actual
    assert "not yet: mailworker profiles authorize biuro" == shown["oauth_authorized"]
    assert secret not in json.dumps(shown)


def test_switching_a_password_profile_to_oauth_drops_the_password(
    cli_env: dict[str, str],
) -> None:
    """Microsoft switched passwords off: edit --auth oauth2 keeps the account, removes the
    password it no longer uses, and says how the profile now signs in."""
    _ok(
        cli_env,
        *["profiles", "add", "biuro", "--preset", "office365", "--from", "anna@contoso.com"],
        "--password-stdin",
        input="Stare-Haslo-365",
    )

    result = _ok(
        cli_env,
        *["profiles", "edit", "biuro", "--auth", "oauth2"],
        *["--oauth-client-id", "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11"],
    )

    assert "OAuth 2.0 as anna@contoso.com (microsoft, device_code)" in result.stdout
    shown = _show(cli_env, "biuro")
    assert ("oauth2", "not set") == (shown["auth_method"], shown["password"])


def test_presets_lists_the_providers(cli_env: dict[str, str]) -> None:
    """``profiles presets`` shows each provider's server and login rule, also as JSON."""
    lines = _ok(cli_env, "profiles", "presets").stdout.splitlines()
    assert lines[0].split()[:3] == ["PRESET", "SERVER", "ENCRYPTION"]
    assert lines[1].split()[:5] == ["wp", "smtp.wp.pl:465", "ssl", "local_part", "300"]
    listed = json.loads(_ok(cli_env, "profiles", "presets", "--json").stdout)
    gmail = next(preset for preset in listed if preset["name"] == "gmail")
    assert (gmail["daily_cap"], gmail["strip_password_spaces"]) == (500, True)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], "nothing to change"),
        (["--password-stdin", "--no-password"], "give only one of --password-stdin"),
        (["--ask-password"], "--ask-password needs a terminal"),
        (["--daily-cap", "5", "--no-daily-cap"], "give --daily-cap or --no-daily-cap, not both"),
    ],
)
def test_edit_refuses_contradictory_options(
    cli_env: dict[str, str], options: list[str], expected: str
) -> None:
    """edit says what is wrong with its options before touching anything."""
    result = _run(cli_env, "profiles", "edit", "comarch-dms-wp", *options)
    assert result.exit_code == 2
    assert expected in result.output


def test_edit_says_the_new_values(cli_env: dict[str, str]) -> None:
    """``edit --disable`` says what the profile now is (enabled: no), not just the field's name."""
    _add_wp(cli_env)

    disabled = _ok(cli_env, "profiles", "edit", "comarch-dms-wp", "--disable")
    enabled = _ok(cli_env, "profiles", "edit", "comarch-dms-wp", "--enable")

    assert "(enabled: no)" in disabled.stdout
    assert "sending disabled" in disabled.stdout
    assert "(enabled: yes)" in enabled.stdout
    assert "sending disabled" not in enabled.stdout


def test_preset_names_ignore_case_and_the_help_lists_them(cli_env: dict[str, str]) -> None:
    """``--preset WP`` is the wp preset; ``--help`` names every preset."""
    added = _ok(cli_env, "profiles", "add", "wp-duze", "--preset", "WP", "--from",
                "jankowalski@wp.pl", "--password-env", "P", P="tajne-haslo")  # fmt: skip
    shown = _ok(cli_env, "profiles", "show", "wp-duze", "--json")
    help_text = _ok(cli_env, "profiles", "add", "--help").stdout

    assert "hint (wp)" in added.stdout
    assert '"preset": "wp"' in shown.stdout
    assert all(name in " ".join(help_text.split()) for name in ("gmail-workspace", "office365"))
