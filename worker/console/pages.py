"""What every page of the console needs: the templates, the language, the signed-in user,
the CSRF check and one repository per request.

Each group of pages is a module of its own (``session_pages``, ``account_pages``, ...) with a
``routes(kit)`` function; :mod:`worker.console.app` puts them together.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from worker.console.auth import CSRF_FIELD, LoginThrottle, csrf_matches, csrf_token
from worker.console.i18n import LANGUAGES, choose_language, explainer, translations
from worker.console_users import ConsoleUser
from worker.moments import utc_iso
from worker.repository import Repository
from worker.settings import Settings

__all__ = ["HERE", "PageKit", "local_path"]

HERE = Path(__file__).parent


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["utc_iso"] = utc_iso
    return Jinja2Templates(env=environment)


def local_path(text: object) -> str | None:
    """``text`` if it is a path of this site, else None: never an address elsewhere (a scheme,
    ``//host`` or a backslash, which browsers read as a slash)."""
    if not isinstance(text, str) or not text.startswith("/") or text.startswith("//"):
        return None
    if "\\" in text or any(ord(character) < 32 for character in text):
        return None
    return text


class PageKit:
    """The parts the pages share; one instance per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.templates = _templates()
        self.throttle = LoginThrottle()

    @contextlib.asynccontextmanager
    async def repository(self, request: Request) -> AsyncIterator[Repository]:
        """A repository in one transaction, committed when the block ends without error."""
        engine: AsyncEngine = request.app.state.engine
        async with engine.begin() as connection:
            yield Repository(connection)

    def language(self, request: Request) -> str:
        return choose_language(
            request.session.get("language"), request.headers.get("accept-language")
        )

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        language = self.language(request)
        page = {
            "_": translations(language).gettext,
            # A sentence of the core (a hint, a pause or failure reason, a preset's advice)
            # in the page's language; a server's own reply inside it stays as the server said.
            "explain": explainer(language),
            "language": language,
            "languages": LANGUAGES,
            "csrf_field": CSRF_FIELD,
            "csrf_token": csrf_token(request.session),
            "here": request.url.path,
            "user": None,
            **context,
        }
        response = self.templates.TemplateResponse(request, template, page, status_code=status)
        response.headers["content-language"] = language
        return response

    async def problem_page(self, request: Request, exc: Exception) -> Response:
        """An HTTP error as a page in the person's language: what went wrong, in words."""
        assert isinstance(exc, HTTPException)  # the only exception it is registered for
        if exc.status_code in {204, 304}:  # answers without a body
            return Response(status_code=exc.status_code, headers=exc.headers)
        user = await self.signed_in(request) if "session" in request.scope else None
        page = self.render(
            request, "problem.html", exc.status_code, user=user, code=exc.status_code,
            detail=exc.detail,
        )  # fmt: skip
        page.headers.update(exc.headers or {})  # e.g. Allow of a 405
        return page

    async def checked_form(self, request: Request) -> FormData:
        """The posted form, once its CSRF token is the session's; 403 otherwise."""
        form = await request.form()
        if not csrf_matches(request.session, form.get(CSRF_FIELD)):
            raise HTTPException(403, "The form has expired or came from elsewhere.")
        return form

    async def admin_form(self, request: Request) -> tuple[ConsoleUser, FormData | None] | Response:
        """For an admin's page that is a form: the signed-in admin and the posted form (its
        CSRF token checked first, 403 otherwise; None for a GET), or the answer for anyone
        else (:meth:`admin`)."""
        posted = await self.checked_form(request) if request.method == "POST" else None
        user = await self.admin(request)
        return user if isinstance(user, Response) else (user, posted)

    async def signed_in(self, request: Request) -> ConsoleUser | None:
        """The signed-in user, read again each time: a removed user is signed out at once."""
        name = request.session.get("user")
        if not isinstance(name, str):
            return None
        async with self.repository(request) as repository:
            user = await repository.console_user(name)
        if user is None:
            request.session.clear()
        return user

    async def reader(self, request: Request) -> ConsoleUser | Response:
        """The signed-in user of any role; for no one, the sign-in page, which leads back
        to the page asked for (a GET's; a form posted signed out is not posted again)."""
        user = await self.signed_in(request)
        if user is None:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if request.method != "GET" or local_path(wanted) in {None, "/"}:
                return RedirectResponse("/login", status_code=303)
            return RedirectResponse(f"/login?{urlencode({'next': wanted})}", status_code=303)
        return user

    async def admin(self, request: Request) -> ConsoleUser | Response:
        """The signed-in admin; the sign-in page for no one, 403 for a viewer."""
        user = await self.reader(request)
        if isinstance(user, ConsoleUser) and not user.is_admin:
            raise HTTPException(403, "Only an administrator may do this.")
        return user
