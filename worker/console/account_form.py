"""The account form: a profile added or changed by an admin, by the same rules as the CLI.

The posted form becomes the ``given`` fields of :func:`worker.profiles.build_fields` (add) or
the changes of :func:`worker.profiles.edit_fields` (edit); :func:`worker.profiles.profile_problems`
checks them and each problem is shown beside the field it is about (:func:`problem_field`).
The stored password never goes back to the browser: an empty password on edit keeps it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, get_args

from worker.crypto import PasswordCipher
from worker.errors import InvalidProfile
from worker.presets import Preset, load_presets
from worker.profile_saving import (
    NewPassword,
    password_values,
    preset_or_none,
    profile_as_saved,
    settle_default,
)
from worker.profiles import (
    AuthMethod,
    Encryption,
    Profile,
    ProfileFields,
    build_fields,
    edit_fields,
    preset_caps,
    profile_problems,
)
from worker.repository import Repository
from worker.sentences import N_

__all__ = [
    "ENCRYPTIONS",
    "FORM_FIELDS",
    "AccountForm",
    "Saved",
    "account_to_check",
    "add_account",
    "edit_account",
    "problem_field",
]

# The text fields of the form, in the guide's order; the checkbox "enabled" comes first.
FORM_FIELDS = (
    "name",
    "from_address",
    "display_name",
    "reply_to",
    "description",
    "host",
    "port",
    "encryption",
    "auth_method",
    "login",
    "daily_cap",
    "daily_recipient_cap",
    "per_minute_cap",
    "max_recipients_per_message",
    "preset",
)
# The caps, whole numbers or empty (no cap); the form's other number is the port.
CAPS = ("daily_cap", "daily_recipient_cap", "per_minute_cap", "max_recipients_per_message")
ENCRYPTIONS: tuple[str, ...] = get_args(Encryption)
AUTH_METHODS: tuple[str, ...] = get_args(AuthMethod)
EXISTS = N_("An account with this name exists already.")
# Where each problem of profile_problems belongs, by how its sentence starts.
_PROBLEM_FIELDS = (
    ("account name", "name"),
    ("outgoing address", "from_address"),
    ("reply-to address", "reply_to"),
    ("display name", "display_name"),
    ("server host", "host"),
    ("port ", "port"),
    ("encryption none", "encryption"),
    ("authentication login needs a login", "login"),
    ("authentication login needs a password", "password"),
    ("a password is given", "password"),
    ("the password is empty", "password"),
    ("daily cap", "daily_cap"),
    ("daily recipient cap", "daily_recipient_cap"),
    ("per-minute cap", "per_minute_cap"),
    ("max recipients per message", "max_recipients_per_message"),
    ("unknown preset", "preset"),
)


def problem_field(problem: str) -> str | None:
    """The form field a problem is about; ``None``: it goes at the top of the form."""
    for start, field in _PROBLEM_FIELDS:
        if problem.startswith(start):
            return field
    if " expects the login" in problem or "as the login" in problem:
        return "login"
    return None


@dataclasses.dataclass
class AccountForm:
    """What the form shows: the values as typed, and the problems by field (``""``: top)."""

    values: dict[str, str]
    enabled: bool = True
    problems: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    hint: str = ""

    @classmethod
    def blank(cls) -> AccountForm:
        values = dict.fromkeys(FORM_FIELDS, "")
        values |= {"encryption": "auto", "auth_method": "login"}
        return cls(values)

    @classmethod
    def of(cls, profile: Profile) -> AccountForm:
        """A stored profile's fields; the password is not among them."""
        values = {
            name: "" if getattr(profile, name) is None else str(getattr(profile, name))
            for name in FORM_FIELDS
        }
        return cls(values, enabled=profile.enabled)

    @classmethod
    def posted(cls, form: Mapping[str, Any]) -> AccountForm:
        values = {name: str(form.get(name, "")) for name in FORM_FIELDS}
        return cls(values, enabled=form.get("enabled") == "on")

    def apply_preset(self, presets: Mapping[str, Preset]) -> None:
        """Fill server, port, encryption and the caps from the chosen preset."""
        preset = presets.get(self.values["preset"])
        if preset is None:
            self.problems = {"preset": [N_("Choose a provider preset first.")]}
            return
        caps = preset_caps(preset)
        self.values |= {
            "host": preset.host,
            "port": str(preset.port),
            "encryption": preset.encryption,
            **{name: "" if caps[name] is None else str(caps[name]) for name in CAPS},
        }
        self.hint = preset.hint

    def given(self) -> dict[str, Any]:
        """The fields as build_fields and edit_fields take them; a wrong number is a problem."""
        given: dict[str, Any] = {
            name: self.values[name] for name in FORM_FIELDS if name not in {"port", *CAPS}
        }
        given["enabled"] = self.enabled
        for name, allowed in (("encryption", ENCRYPTIONS), ("auth_method", AUTH_METHODS)):
            if given[name] not in allowed:
                problem = N_("%(value)s is not a choice") % {"value": repr(given[name])}
                self.problems.setdefault(name, []).append(problem)
        for name in ("port", *CAPS):
            text = self.values[name].strip()
            if not text:
                if name in CAPS:
                    given[name] = None  # empty: no cap
                continue
            try:
                given[name] = int(text)
            except ValueError:
                problem = N_("%(value)s is not a whole number") % {"value": repr(text)}
                self.problems.setdefault(name, []).append(problem)
        return given

    def add_problems(self, problems: list[str]) -> None:
        for problem in problems:
            self.problems.setdefault(problem_field(problem) or "", []).append(problem)


@dataclasses.dataclass(frozen=True)
class Saved:
    """A stored change: the fields, the changed names (edit) and whether it is the default."""

    fields: ProfileFields
    changed: list[str]
    is_default: bool = False


@dataclasses.dataclass(frozen=True)
class _Planned:
    """A valid form as it would be stored: the fields and the password column's change."""

    fields: ProfileFields
    password: dict[str, bytes | None]


async def _plan_new(
    repository: Repository, form: AccountForm, password: str, cipher: PasswordCipher | None
) -> _Planned | None:
    """A new profile by the rules of ``profiles add``; ``None`` (and ``form.problems``) if not."""
    presets = load_presets()
    given = form.given()
    if not given["host"].strip():
        del given["host"]  # the preset's server, if one is chosen
    preset = presets.get(form.values["preset"]) if form.values["preset"] else None
    if preset is not None:
        # As `profiles add --preset`: a cap left empty is the provider's limit, not none.
        for name in CAPS:
            if given.get(name, 0) is None:
                del given[name]
    if form.problems:
        return None
    fields = build_fields(given, preset)
    new = NewPassword(password, cipher) if password and cipher is not None else None
    form.add_problems(profile_problems(fields, has_password=new is not None, presets=presets))
    if fields.name and await repository.profile_exists(fields.name):
        form.problems.setdefault("name", []).append(EXISTS)
    if form.problems:
        return None
    try:
        token = None if new is None else new.token(preset)
    except InvalidProfile as exc:  # only blanks, once Gmail's spaces are taken out
        form.add_problems(exc.problems)
        return None
    return _Planned(fields, {"password_encrypted": token})


def _plan_edit(
    current: Profile, form: AccountForm, password: str, cipher: PasswordCipher | None
) -> _Planned | None:
    """``current`` changed by the rules of ``profiles edit``; an empty password keeps it."""
    changes = form.given()
    changes.pop("name")  # the name is not changed here
    if form.problems:
        return None
    fields = edit_fields(
        ProfileFields.of(current), changes, preset_or_none(changes["preset"] or None)
    )
    new = NewPassword(password, cipher) if password and cipher is not None else None
    try:
        values = password_values(current, fields, new, remove=False)
    except InvalidProfile as exc:  # only blanks, once Gmail's spaces are taken out
        form.add_problems(exc.problems)
        return None
    has_password = values.get("password_encrypted", current.password_encrypted) is not None
    form.add_problems(
        profile_problems(
            fields,
            has_password=has_password,
            presets=load_presets(),
            has_oauth_credential=current.oauth_credential_encrypted is not None,
        )
    )
    return None if form.problems else _Planned(fields, values)


async def add_account(
    repository: Repository,
    form: AccountForm,
    password: str,
    cipher: PasswordCipher | None,
) -> Saved | None:
    """Store a new profile as ``profiles add`` does; ``None`` (and ``form.problems``) if not."""
    planned = await _plan_new(repository, form, password, cipher)
    if planned is None:
        return None
    fields = planned.fields
    await repository.create_profile({**fields.as_row(), **planned.password})
    is_default = await settle_default(repository, fields.name, make_default=False)
    return Saved(fields, [], is_default)


async def edit_account(
    repository: Repository,
    current: Profile,
    form: AccountForm,
    password: str,
    cipher: PasswordCipher | None,
) -> Saved | None:
    """Change a profile as ``profiles edit`` does; an empty password keeps the stored one."""
    planned = _plan_edit(current, form, password, cipher)
    if planned is None:
        return None
    fields = planned.fields
    changed = fields.differences(ProfileFields.of(current)) + ["password" for _ in planned.password]
    if changed:
        await repository.update_profile(current.name, {**fields.as_row(), **planned.password})
    return Saved(fields, changed)


async def account_to_check(
    repository: Repository,
    current: Profile | None,
    form: AccountForm,
    password: str,
    cipher: PasswordCipher | None,
) -> Profile | None:
    """The profile the form would save (``current`` changed, or a new one), validated by the
    same rules, for a connection check; nothing is stored. ``None`` (and ``form.problems``)
    if the form would not be saved."""
    if current is None:
        planned = await _plan_new(repository, form, password, cipher)
    else:
        planned = _plan_edit(current, form, password, cipher)
    return None if planned is None else profile_as_saved(planned.fields, planned.password, current)
