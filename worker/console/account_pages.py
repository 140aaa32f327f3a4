"""The accounts page and the account form (add and edit)."""

from __future__ import annotations

import structlog
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from worker.console.account_form import (
    ENCRYPTIONS,
    AccountForm,
    account_to_check,
    add_account,
    edit_account,
)
from worker.console.accounts import account_rows
from worker.console.connection_check import CheckView, check_view
from worker.console.pages import PageKit
from worker.console_users import ConsoleUser
from worker.crypto import load_cipher
from worker.listener import notify_channel
from worker.logs import register_secret
from worker.presets import load_presets
from worker.profile_check import check_as_worker
from worker.profiles import Profile
from worker.repository import Repository

__all__ = ["routes"]

log = structlog.get_logger("worker.console")


class AccountPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit

    async def accounts(self, request: Request) -> Response:
        user = await self._kit.reader(request)
        if isinstance(user, Response):
            return user
        async with self._kit.repository(request) as repository:
            rows = await account_rows(repository)
        return self._kit.render(request, "accounts.html", user=user, rows=rows)

    def _render_form(
        self,
        request: Request,
        user: ConsoleUser,
        form: AccountForm,
        *,
        editing: str | None,
        check: CheckView | None = None,
        password_typed: bool = False,
    ) -> Response:
        status = 422 if form.problems else 200
        presets = load_presets()
        chosen = presets.get(form.values["preset"])
        if not form.hint and chosen is not None:
            form.hint = chosen.hint  # the provider's advice whenever its preset is chosen
        return self._kit.render(
            request, "account_form.html", status, user=user, form=form, editing=editing,
            presets=presets, encryptions=ENCRYPTIONS, check=check, password_typed=password_typed,
        )  # fmt: skip

    async def _check(
        self,
        request: Request,
        user: ConsoleUser,
        current: Profile | None,
        form: AccountForm,
        posted: FormData,
    ) -> Response:
        """Check the connection the form describes, before saving it; nothing is stored.

        The typed password is used for this check only: it is not sent back to the browser,
        so saving needs it typed again (an empty one on edit keeps the stored password).
        """
        kit = self._kit
        editing = None if current is None else current.name
        password = _password(posted)
        cipher = load_cipher(kit.settings) if password else None
        async with kit.repository(request) as repository:
            profile = await account_to_check(repository, current, form, password, cipher)
        if profile is None:
            return self._render_form(request, user, form, editing=editing)
        # No transaction is open while the server is asked; each step waits at most the
        # profile's timeout, and other requests are served meanwhile.
        report = await check_as_worker(
            profile, kit.settings, lambda **_: kit.repository(request), checked_by=user.name
        )
        return self._render_form(
            request, user, form, editing=editing, check=check_view(report),
            password_typed=bool(password),
        )  # fmt: skip

    async def new_account(self, request: Request) -> Response:
        kit = self._kit
        admitted = await kit.admin_form(request)
        if isinstance(admitted, Response):
            return admitted
        user, posted = admitted
        if posted is None:
            return self._render_form(request, user, AccountForm.blank(), editing=None)
        form = AccountForm.posted(posted)
        if posted.get("action") == "preset":
            form.apply_preset(load_presets())
            return self._render_form(request, user, form, editing=None)
        if posted.get("action") == "check":
            return await self._check(request, user, None, form, posted)
        password = _password(posted)
        cipher = load_cipher(kit.settings) if password else None
        async with kit.repository(request) as repository:
            saved = await add_account(repository, form, password, cipher)
        if saved is None:
            return self._render_form(request, user, form, editing=None)
        fields = saved.fields
        log.info("profile_added", profile=fields.name, preset=fields.preset,
                 default=saved.is_default, by=user.name)  # fmt: skip
        return RedirectResponse("/accounts", status_code=303)

    async def edit_account(self, request: Request) -> Response:
        kit = self._kit
        admitted = await kit.admin_form(request)
        if isinstance(admitted, Response):
            return admitted
        user, posted = admitted
        name = request.path_params["name"]
        if posted is not None and posted.get("action") == "check":
            async with kit.repository(request) as repository:
                current = await _stored(repository, name)
            form = AccountForm.posted(posted)
            form.values["name"] = name
            return await self._check(request, user, current, form, posted)
        async with kit.repository(request) as repository:
            current = await _stored(repository, name)
            if posted is None:
                return self._render_form(request, user, AccountForm.of(current), editing=name)
            form = AccountForm.posted(posted)
            form.values["name"] = name
            if posted.get("action") == "preset":
                form.apply_preset(load_presets())
                return self._render_form(request, user, form, editing=name)
            password = _password(posted)
            cipher = load_cipher(kit.settings) if password else None
            saved = await edit_account(repository, current, form, password, cipher)
            if saved is None:
                return self._render_form(request, user, form, editing=name)
            if saved.changed:
                await repository.wake_workers(notify_channel(kit.settings.db_schema))
        if saved.changed:
            log.info("profile_updated", profile=name, fields=saved.changed, by=user.name)
        return RedirectResponse("/accounts", status_code=303)


async def _stored(repository: Repository, name: str) -> Profile:
    current = await repository.get_profile(name)
    if current is None:
        raise HTTPException(404, "No account has this name.")
    return current


def _password(form: FormData) -> str:
    """The password typed in the form, registered at once so that no log line shows it."""
    password = str(form.get("password", ""))
    if password:
        register_secret(password)
    return password


def routes(kit: PageKit) -> list[Route]:
    pages = AccountPages(kit)
    return [
        Route("/accounts", pages.accounts, methods=["GET"]),
        Route("/accounts/new", pages.new_account, methods=["GET", "POST"]),
        Route("/accounts/{name}/edit", pages.edit_account, methods=["GET", "POST"]),
    ]
