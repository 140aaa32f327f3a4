"""Signing in and out, and the language switch."""

from __future__ import annotations

import math

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from worker.console.i18n import LANGUAGES
from worker.console.pages import PageKit, local_path
from worker.console.passwords import verify_password

__all__ = ["HOME", "routes"]

log = structlog.get_logger("worker.console")

HOME = "/overview"  # where signing in leads


class SessionPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit

    async def home(self, request: Request) -> Response:
        return RedirectResponse(HOME, status_code=303)

    async def login_page(self, request: Request) -> Response:
        wanted = local_path(request.query_params.get("next")) or HOME
        if await self._kit.signed_in(request) is not None:
            return RedirectResponse(wanted, status_code=303)
        return self._kit.render(request, "login.html", error=None, name="", next=wanted)

    async def login(self, request: Request) -> Response:
        kit = self._kit
        form = await kit.checked_form(request)
        name = str(form.get("name", "")).strip()
        password = str(form.get("password", ""))
        wanted = local_path(form.get("next")) or HOME
        client = request.client.host if request.client else "unknown"
        wait = kit.throttle.wait_seconds(name, client)
        if wait > 0:
            log.warning("console_login_throttled", client=client, wait_seconds=math.ceil(wait))
            minutes = math.ceil(wait / 60)
            return kit.render(
                request, "login.html", 429, error="throttled", minutes=minutes, name=name,
                next=wanted,
            )  # fmt: skip
        async with kit.repository(request) as repository:
            user = await repository.console_user(name) if name else None
            if user is None or not verify_password(user.password_hash, password):
                if user is None:
                    verify_password(None, password)  # as long as a wrong password takes
                kit.throttle.failed(name, client)
                # A name that is no user is not logged: it may be a password typed in its place.
                who = user.name if user else None
                log.warning("console_login_refused", user=who, client=client)
                return kit.render(
                    request, "login.html", 401, error="refused", name=name, next=wanted
                )
            await repository.record_console_login(user.name)
        language = request.session.get("language")
        request.session.clear()  # a new session, with a new CSRF token, for the signed-in user
        request.session["user"] = user.name
        if language in LANGUAGES:
            request.session["language"] = language
        log.info("console_login", user=user.name, role=user.role, client=client)
        return RedirectResponse(wanted, status_code=303)

    async def logout(self, request: Request) -> Response:
        await self._kit.checked_form(request)
        name = request.session.get("user")
        language = request.session.get("language")
        request.session.clear()
        if language in LANGUAGES:  # the person's language outlives their sign-in
            request.session["language"] = language
        if isinstance(name, str):
            log.info("console_logout", user=name)
        return RedirectResponse("/login", status_code=303)

    async def language(self, request: Request) -> Response:
        form = await self._kit.checked_form(request)
        chosen = form.get("language")
        if chosen in LANGUAGES:
            request.session["language"] = chosen
        return RedirectResponse(local_path(form.get("next")) or "/", status_code=303)


def routes(kit: PageKit) -> list[Route]:
    pages = SessionPages(kit)
    return [
        Route("/", pages.home),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/language", pages.language, methods=["POST"]),
    ]
