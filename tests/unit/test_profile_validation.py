"""Profile fields: presets fill them, and every mistake is named in words a person understands."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from worker.errors import InvalidProfile
from worker.presets import load_presets, parse_presets
from worker.profiles import (
    ProfileFields,
    build_fields,
    clean_password,
    edit_fields,
    ensure_valid,
    parse_profiles_file,
    profile_problems,
    profile_warnings,
)

PRESETS = parse_presets(
    """
[wp]
title = "Poczta WP"
host = "smtp.wp.pl"
port = 465
encryption = "ssl"
login_rule = "local_part"
daily_cap = 300
hint = "Switch on access for mail programs."
source = "test"

[onet]
title = "Onet Poczta"
host = "smtp.poczta.onet.pl"
port = 465
encryption = "ssl"
other_ports = [587]
login_rule = "full_address"
hint = "The login is the full address."
source = "test"

[gmail]
title = "Gmail"
host = "smtp.gmail.com"
port = 465
encryption = "ssl"
other_ports = [587]
login_rule = "full_address"
daily_cap = 500
strip_password_spaces = true
hint = "Use an app password."
source = "test"
""",
    source="test",
)

# The guide's Poczta WP example, as `profiles add --preset wp ...` gives it.
WP_EXAMPLE: dict[str, Any] = {
    "name": "Comarch DMS",
    "from_address": "jankowalski@wp.pl",
    "display_name": "Comarch DMS - powiadomienia",
    "reply_to": "jankowalski@wp.pl",
    "description": "Konto do wysyłania powiadomień Comarch DMS",
    "host": "smtp.wp.pl",
    "port": 587,
    "encryption": "auto",
    "auth_method": "login",
    "login": "jankowalski",
}


def _wp(**changes: Any) -> ProfileFields:
    return build_fields({**WP_EXAMPLE, **changes}, PRESETS["wp"])


def _problems(fields: ProfileFields, *, has_password: bool = True) -> list[str]:
    return profile_problems(fields, has_password=has_password, presets=PRESETS)


def test_the_guide_examples_are_valid() -> None:
    """The guide's WP, Onet and Gmail settings pass as they are written there."""
    onet = build_fields(
        {
            "name": "onet",
            "from_address": "annanowak@op.pl",
            "host": "smtp.poczta.onet.pl",
            "port": 465,
            "encryption": "auto",
            "login": "annanowak@op.pl",
        },
        PRESETS["onet"],
    )
    gmail = build_fields(
        {"name": "gmail", "from_address": "jan.kowalski@gmail.com", "encryption": "auto"},
        PRESETS["gmail"],
    )
    assert [_problems(_wp()), _problems(onet), _problems(gmail)] == [[], [], []]


def test_a_preset_fills_server_encryption_cap_and_login() -> None:
    """Given only an address, a preset supplies host, port, encryption, cap and the login."""
    fields = build_fields({"name": "wp", "from_address": "jankowalski@wp.pl"}, PRESETS["wp"])
    expected = ("smtp.wp.pl", 465, "ssl", 300, "jankowalski", "wp")
    actual = (
        fields.host,
        fields.port,
        fields.encryption,
        fields.daily_cap,
        fields.login,
        fields.preset,
    )
    assert expected == actual


def test_explicit_values_override_the_preset() -> None:
    """Whatever the user gives wins over the preset, including "no daily cap"."""
    fields = _wp(host="smtp.example.pl", daily_cap=None, login="jan")
    assert (
        fields.host,
        fields.port,
        fields.encryption,
        fields.daily_cap,
        fields.login,
    ) == ("smtp.example.pl", 587, "auto", None, "jan")


def test_another_port_without_encryption_means_auto() -> None:
    """A preset's ssl belongs to its port 465: on port 587 the profile uses auto instead."""
    fields = build_fields(
        {"name": "g", "from_address": "jan@gmail.com", "port": 587}, PRESETS["gmail"]
    )
    assert (fields.encryption, _problems(fields)) == ("auto", [])


@pytest.mark.parametrize(
    ("preset", "address", "login"),
    [
        ("wp", "jankowalski@wp.pl", "jankowalski"),
        ("onet", "annanowak@op.pl", "annanowak@op.pl"),
        (None, "jan@firma.pl", "jan@firma.pl"),
    ],
)
def test_the_login_follows_the_preset_rule(preset: str | None, address: str, login: str) -> None:
    """Without a login, the part before the @ (WP) or the full address (Onet, no preset)."""
    fields = build_fields(
        {"name": "p", "from_address": address, "host": "smtp.firma.pl"},
        PRESETS[preset] if preset else None,
    )
    assert login == fields.login


def test_blank_optional_fields_are_not_set() -> None:
    """An empty reply-to, login or CA file means "none", and blanks around values are dropped."""
    fields = _wp(reply_to="", ca_bundle="  ", from_address=" jankowalski@wp.pl ")
    assert (
        fields.reply_to,
        fields.ca_bundle,
        fields.from_address,
    ) == (None, None, "jankowalski@wp.pl")
    assert _problems(fields) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"encryption": "ssl", "port": 587},
            "port 587 expects STARTTLS; use encryption=starttls or auto, or port 465 for ssl",
        ),
        (
            {"encryption": "starttls", "port": 465},
            "port 465 expects implicit TLS, not starttls; use encryption=ssl or auto,"
            " or port 587 for starttls",
        ),
        ({"login": "jankowalski@wp.pl"}, "wp expects the login without the domain:"),
        (
            {"encryption": "none", "port": 25},
            "encryption none with login and password: a password would travel unencrypted",
        ),
        ({"from_address": "jankowalski@"}, "outgoing address (from_address) 'jankowalski@'"),
        ({"reply_to": "jan kowalski"}, "reply-to address 'jan kowalski' is not a valid"),
        ({"display_name": "Jan\r\nBcc: x@y.pl"}, "display name contains a line break"),
        ({"port": 0}, "port 0 must be between 1 and 65535"),
        ({"port": 70000}, "port 70000 must be between 1 and 65535"),
        ({"host": ""}, "server host is empty"),
        ({"host": "smtp://smtp.wp.pl"}, "server host 'smtp://smtp.wp.pl' must be the server"),
        ({"host": "smtp.wp.pl:587"}, "server host 'smtp.wp.pl:587' is not a server name"),
        ({"name": ""}, "account name is empty"),
        ({"name": "wp/prod"}, "account name 'wp/prod' may contain only letters"),
        ({"daily_cap": 0}, "daily cap 0 must be at least 1 (leave it empty for no cap)"),
        ({"max_connections": 51}, "max connections 51 must be between 1 and 50"),
        ({"timeout_seconds": 0}, "timeout 0 s must be between 1 and 3600 seconds"),
        ({"timeout_seconds": 3601}, "timeout 3601 s must be between 1 and 3600 seconds"),
        (
            {"preset": "wpp"},
            "unknown preset 'wpp'; did you mean 'wp'? known presets: gmail, onet, wp",
        ),
    ],
)
def test_each_mistake_is_named(changes: dict[str, Any], expected: str) -> None:
    """Each wrong field gives one problem that says what is wrong and what would be right."""
    problems = _problems(dataclasses.replace(_wp(), **changes))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"auth_method": "oauth2"}, "authentication oauth2 needs a provider"),
        (
            {"auth_method": "oauth2", "oauth_provider": "microsoft", "oauth_flow": "device_code"},
            "authentication oauth2 needs the client id of the app",
        ),
        (
            {
                "auth_method": "oauth2",
                "oauth_provider": "google",
                "oauth_flow": "device_code",
                "oauth_client_id": "1234.apps.googleusercontent.com",
            },
            "oauth flow device_code is not one of google's: authorization_code, service_account",
        ),
        (
            {
                "auth_method": "oauth2",
                "oauth_provider": "microsoft",
                "oauth_flow": "client_credentials",
                "oauth_client_id": "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11",
                "oauth_tenant": "contoso.onmicrosoft.com",
            },
            "oauth flow client_credentials needs a client secret or certificate",
        ),
        (
            {
                "auth_method": "oauth2",
                "oauth_provider": "microsoft",
                "oauth_flow": "device_code",
                "oauth_client_id": "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11",
                "oauth_authority": "http://login.microsoftonline.us",
            },
            "oauth authority 'http://login.microsoftonline.us' must be an https:// address",
        ),
    ],
)
def test_each_oauth_mistake_is_named(changes: dict[str, Any], expected: str) -> None:
    """An OAuth 2.0 profile without its provider, app, credential or a safe endpoint gets
    one problem that says what is missing."""
    problems = _problems(dataclasses.replace(_wp(), **changes), has_password=False)
    assert [expected] == [problem[: len(expected)] for problem in problems]


def test_an_app_only_profile_needs_its_own_tenant() -> None:
    """Client credentials at 'organizations' cannot work (the app belongs to one tenant)."""
    fields = dataclasses.replace(
        _wp(),
        auth_method="oauth2",
        oauth_provider="microsoft",
        oauth_flow="client_credentials",
        oauth_client_id="5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11",
        oauth_tenant="organizations",
    )
    problems = profile_problems(
        fields, has_password=False, presets=PRESETS, has_oauth_credential=True
    )
    assert [
        "oauth flow client_credentials signs in as your organisation's app: give your tenant id"
        " or domain (--oauth-tenant contoso.onmicrosoft.com), not organizations"
    ] == problems


def test_an_oauth_profile_takes_its_provider_flow_and_tenant_from_the_preset() -> None:
    """office365 with --auth oauth2: Microsoft, a person's device-code sign-in, work accounts,
    and the whole address as the SMTP login."""
    fields = build_fields(
        {
            "name": "biuro",
            "from_address": "anna@contoso.com",
            "auth_method": "oauth2",
            "oauth_client_id": "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11",
        },
        load_presets()["office365"],
    )
    assert ("microsoft", "device_code", "organizations", "anna@contoso.com") == (
        fields.oauth_provider,
        fields.oauth_flow,
        fields.oauth_tenant,
        fields.login,
    )
    assert [] == profile_problems(fields, has_password=False, presets=load_presets())


def test_the_wp_login_rule_suggests_the_right_login() -> None:
    """WP wants ``jankowalski``, not ``jankowalski@wp.pl``, and the message says exactly that."""
    assert (_problems(_wp(login="jankowalski@wp.pl"))) == [
        "wp expects the login without the domain: 'jankowalski', not 'jankowalski@wp.pl'"
    ]


def test_onet_wants_the_full_address() -> None:
    """Onet's login is the whole address; a bare user name is refused with an example."""
    fields = build_fields(
        {"name": "onet", "from_address": "annanowak@op.pl", "login": "annanowak"},
        PRESETS["onet"],
    )
    assert _problems(fields) == [
        "onet expects the full e-mail address as the login, e.g. 'annanowak@op.pl', not 'annanowak'"
    ]


def test_password_authentication_needs_a_login_and_a_password() -> None:
    """auth=login without a login or without a password says so for each."""
    fields = dataclasses.replace(_wp(), login=None)
    assert _problems(fields, has_password=False) == [
        "authentication login needs a login (user name)",
        "authentication login needs a password and none is given"
        " (type it at the prompt, or use --password-stdin, --password-env or password_env)",
    ]


def test_no_authentication_takes_no_password() -> None:
    """auth=none with a password is refused; without one it needs no login either."""
    fields = dataclasses.replace(_wp(), auth_method="none", login=None)
    assert _problems(fields, has_password=False) == []
    assert _problems(fields, has_password=True) == [
        "a password is given but authentication is none; remove one of them"
    ]


def test_a_relay_without_login_may_go_unencrypted() -> None:
    """With no password to protect, encryption none is allowed (an internal relay on port 25)."""
    fields = dataclasses.replace(_wp(), auth_method="none", login=None, encryption="none", port=25)
    assert _problems(fields, has_password=False) == []


def test_all_problems_are_reported_together() -> None:
    """ensure_valid raises one InvalidProfile that lists every problem, joined on one line."""
    fields = dataclasses.replace(_wp(), port=0, from_address="x")
    with pytest.raises(InvalidProfile) as caught:
        ensure_valid(fields, has_password=True, presets=PRESETS)
    assert len(caught.value.problems) == 2
    assert "\n" not in str(caught.value)


def test_edit_changes_only_the_given_fields() -> None:
    """Editing the port keeps every other field as it was."""
    before = _wp()
    after = edit_fields(before, {"port": 465, "reply_to": ""}, PRESETS["wp"])
    assert after.differences(before) == ["port", "reply_to"]
    assert (after.port, after.reply_to) == (465, None)


def test_edit_derives_a_login_when_one_becomes_needed() -> None:
    """Switching from no authentication to login fills the login from the preset's rule."""
    relay = dataclasses.replace(_wp(), auth_method="none", login=None)
    assert edit_fields(relay, {"auth_method": "login"}, PRESETS["wp"]).login == "jankowalski"


def test_warnings_name_doubtful_settings() -> None:
    """An undocumented port, a cap above the provider's and unchecked TLS are noted, not refused."""
    fields = _wp(daily_cap=1000, verify_tls=False, ca_bundle="/etc/ca.pem")
    warnings = profile_warnings(fields, PRESETS["wp"])
    assert len(warnings) == 4, warnings
    assert warnings[0].startswith("Poczta WP documents port 465 for smtp.wp.pl; port 587")
    assert "a daily cap of 1000 may get the account blocked" in warnings[1]
    assert warnings[2].startswith("verify_tls is off")
    assert profile_warnings(_wp(port=465, encryption="ssl"), PRESETS["wp"]) == []


@pytest.mark.parametrize(
    ("preset", "typed", "stored"),
    [
        ("gmail", "pvli anpr lvvr nrrn", "pvlianprlvvrnrrn"),
        ("gmail", "pvlianprlvvrnrrn", "pvlianprlvvrnrrn"),
        ("wp", "Konwalia 369!", "Konwalia 369!"),
        (None, " spaced ", " spaced "),
    ],
)
def test_spaces_are_dropped_only_where_the_preset_says(
    preset: str | None, typed: str, stored: str
) -> None:
    """Gmail app passwords work with or without Google's spaces; other passwords stay intact."""
    assert stored == clean_password(typed, PRESETS[preset] if preset else None)


def test_an_empty_password_is_refused() -> None:
    """A password of only Google's spaces is no password."""
    with pytest.raises(InvalidProfile, match="the password is empty"):
        clean_password("   ", PRESETS["gmail"])


def test_a_profiles_file_gives_only_the_fields_it_sets() -> None:
    """Fields a table leaves out are not given, so the preset and defaults fill them."""
    entries = parse_profiles_file(
        """
[profiles.wp]
preset = "wp"
from_address = "jankowalski@wp.pl"
daily_cap = "none"
password_env = "WP_PASSWORD"
default = true
""",
        source="profiles.toml",
    )
    entry = entries["wp"]
    assert entry.given_fields() == {"from_address": "jankowalski@wp.pl", "daily_cap": None}
    assert (entry.preset, entry.password_env, entry.default) == ("wp", "WP_PASSWORD", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[profiles.wp]\nfrom_address = 'a@wp.pl'\nhots = 'x'\n",
            "profiles.toml: profiles.wp.hots: unknown field",
        ),
        (
            "[profiles.wp]\nfrom_address = 'a@wp.pl'\npassword = 'x'\n",
            "profiles.toml: profiles.wp.password: passwords never go into the file",
        ),
        (
            "[profiles.wp]\nfrom_address = 'a@wp.pl'\nport = 'abc'\n",
            "profiles.toml: profiles.wp.port:",
        ),
        ("[profile.wp]\nfrom_address = 'a@wp.pl'\n", "profiles.toml: profile:"),
        ("profiles = {}\n", "profiles.toml has no [profiles.NAME] tables"),
        ("[profiles.wp\n", "profiles.toml is not valid TOML"),
    ],
)
def test_a_bad_profiles_file_is_explained(text: str, expected: str) -> None:
    """Unknown keys (a password in the file, too), wrong types and bad TOML are named."""
    with pytest.raises(InvalidProfile) as caught:
        parse_profiles_file(text, source="profiles.toml")
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value
