"""The console's ASGI app: routes, the session, security headers, one repository per request.

:func:`create_app` takes the settings and the database URL; ``mailworker console`` serves it
with uvicorn. Every page needs a signed-in user; every POST needs the session's CSRF token
(403 without it). Nothing secret reaches a page, a URL or a log line.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.console.account_form import ENCRYPTIONS, AccountForm, add_account, edit_account
from worker.console.accounts import account_rows
from worker.console.auth import CSRF_FIELD, LoginThrottle, csrf_matches, csrf_token, session_secret
from worker.console.i18n import LANGUAGES, choose_language, translations
from worker.console.passwords import verify_password
from worker.console_users import ConsoleUser
from worker.crypto import load_cipher
from worker.db import create_engine
from worker.listener import notify_channel
from worker.logs import register_secret
from worker.moments import utc_iso
from worker.presets import load_presets
from worker.repository import Repository
from worker.settings import Settings

__all__ = ["SECURITY_HEADERS", "SESSION_COOKIE", "create_app"]

log = structlog.get_logger("worker.console")

HERE = Path(__file__).parent
SESSION_COOKIE = "mailworker_console"
SESSION_HOURS = 8
# No inline script or style anywhere: every asset is a file the app serves itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer; pages are not cached either."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self._app = app
        self._https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not scope["path"].startswith("/static/"):
                    headers["cache-control"] = "no-store"
                if self._https:
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        await self._app(scope, receive, with_headers)


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


class _Console:
    """The pages and form posts; one instance per app, holding its templates and throttle."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._templates = _templates()
        self._throttle = LoginThrottle()

    @contextlib.asynccontextmanager
    async def _repository(self, request: Request) -> AsyncIterator[Repository]:
        engine: AsyncEngine = request.app.state.engine
        async with engine.begin() as connection:
            yield Repository(connection)

    def _render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        language = choose_language(
            request.session.get("language"), request.headers.get("accept-language")
        )
        page = {
            "_": translations(language).gettext,
            "language": language,
            "languages": LANGUAGES,
            "csrf_field": CSRF_FIELD,
            "csrf_token": csrf_token(request.session),
            "here": request.url.path,
            "user": None,
            **context,
        }
        response = self._templates.TemplateResponse(request, template, page, status_code=status)
        response.headers["content-language"] = language
        return response

    async def _checked_form(self, request: Request) -> FormData:
        """The posted form, once its CSRF token is the session's; 403 otherwise."""
        form = await request.form()
        if not csrf_matches(request.session, form.get(CSRF_FIELD)):
            raise HTTPException(403, "The form has expired or came from elsewhere.")
        return form

    async def _signed_in(self, request: Request) -> ConsoleUser | None:
        """The signed-in user, read again each time: a removed user is signed out at once."""
        name = request.session.get("user")
        if not isinstance(name, str):
            return None
        async with self._repository(request) as repository:
            user = await repository.console_user(name)
        if user is None:
            request.session.clear()
        return user

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/accounts", status_code=303)

    async def login_page(self, request: Request) -> Response:
        if await self._signed_in(request) is not None:
            return RedirectResponse("/accounts", status_code=303)
        return self._render(request, "login.html", error=None, name="")

    async def login(self, request: Request) -> Response:
        form = await self._checked_form(request)
        name = str(form.get("name", "")).strip()
        password = str(form.get("password", ""))
        client = request.client.host if request.client else "unknown"
        wait = self._throttle.wait_seconds(name, client)
        if wait > 0:
            log.warning("console_login_throttled", client=client, wait_seconds=math.ceil(wait))
            minutes = math.ceil(wait / 60)
            return self._render(
                request, "login.html", 429, error="throttled", minutes=minutes, name=name
            )
        async with self._repository(request) as repository:
            user = await repository.console_user(name) if name else None
            if user is None or not verify_password(user.password_hash, password):
                if user is None:
                    verify_password(None, password)  # as long as a wrong password takes
                self._throttle.failed(name, client)
                # A name that is no user is not logged: it may be a password typed in its place.
                who = user.name if user else None
                log.warning("console_login_refused", user=who, client=client)
                return self._render(request, "login.html", 401, error="refused", name=name)
            await repository.record_console_login(user.name)
        language = request.session.get("language")
        request.session.clear()  # a new session, with a new CSRF token, for the signed-in user
        request.session["user"] = user.name
        if language in LANGUAGES:
            request.session["language"] = language
        log.info("console_login", user=user.name, role=user.role, client=client)
        return RedirectResponse("/accounts", status_code=303)

    async def logout(self, request: Request) -> Response:
        await self._checked_form(request)
        name = request.session.get("user")
        language = request.session.get("language")
        request.session.clear()
        if language in LANGUAGES:  # the person's language outlives their sign-in
            request.session["language"] = language
        if isinstance(name, str):
            log.info("console_logout", user=name)
        return RedirectResponse("/login", status_code=303)

    async def language(self, request: Request) -> Response:
        form = await self._checked_form(request)
        chosen = form.get("language")
        if chosen in LANGUAGES:
            request.session["language"] = chosen
        back = str(form.get("next", "/"))
        # Only a path of this site: never an address elsewhere (//host or a scheme).
        if not back.startswith("/") or back.startswith("//") or "\\" in back:
            back = "/"
        return RedirectResponse(back, status_code=303)

    async def accounts(self, request: Request) -> Response:
        user = await self._signed_in(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        async with self._repository(request) as repository:
            rows = await account_rows(repository)
        return self._render(request, "accounts.html", user=user, rows=rows)

    async def _admin(self, request: Request) -> ConsoleUser | Response:
        """The signed-in admin; the sign-in page for no one, 403 for a viewer."""
        user = await self._signed_in(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        if not user.is_admin:
            raise HTTPException(403, "Only an administrator may change accounts.")
        return user

    def _render_form(
        self, request: Request, user: ConsoleUser, form: AccountForm, *, editing: str | None
    ) -> Response:
        status = 422 if form.problems else 200
        return self._render(
            request, "account_form.html", status, user=user, form=form, editing=editing,
            presets=load_presets(), encryptions=ENCRYPTIONS,
        )  # fmt: skip

    async def new_account(self, request: Request) -> Response:
        posted = await self._checked_form(request) if request.method == "POST" else None
        user = await self._admin(request)
        if isinstance(user, Response):
            return user
        if posted is None:
            return self._render_form(request, user, AccountForm.blank(), editing=None)
        form = AccountForm.posted(posted)
        if posted.get("action") == "preset":
            form.apply_preset(load_presets())
            return self._render_form(request, user, form, editing=None)
        password = self._password(posted)
        cipher = load_cipher(self._settings) if password else None
        async with self._repository(request) as repository:
            saved = await add_account(repository, form, password, cipher)
        if saved is None:
            return self._render_form(request, user, form, editing=None)
        fields = saved.fields
        log.info("profile_added", profile=fields.name, preset=fields.preset,
                 default=saved.is_default, by=user.name)  # fmt: skip
        return RedirectResponse("/accounts", status_code=303)

    async def edit_account(self, request: Request) -> Response:
        posted = await self._checked_form(request) if request.method == "POST" else None
        user = await self._admin(request)
        if isinstance(user, Response):
            return user
        name = request.path_params["name"]
        async with self._repository(request) as repository:
            current = await repository.get_profile(name)
            if current is None:
                raise HTTPException(404, "No account has this name.")
            if posted is None:
                return self._render_form(request, user, AccountForm.of(current), editing=name)
            form = AccountForm.posted(posted)
            form.values["name"] = name
            if posted.get("action") == "preset":
                form.apply_preset(load_presets())
                return self._render_form(request, user, form, editing=name)
            password = self._password(posted)
            cipher = load_cipher(self._settings) if password else None
            saved = await edit_account(repository, current, form, password, cipher)
            if saved is None:
                return self._render_form(request, user, form, editing=name)
            if saved.changed:
                await repository.wake_workers(notify_channel(self._settings.db_schema))
        if saved.changed:
            log.info("profile_updated", profile=name, fields=saved.changed, by=user.name)
        return RedirectResponse("/accounts", status_code=303)

    @staticmethod
    def _password(form: FormData) -> str:
        """The password typed in the form, registered at once so that no log line shows it."""
        password = str(form.get("password", ""))
        if password:
            register_secret(password)
        return password


def create_app(settings: Settings, database_url: str) -> Starlette:
    """The console over the database at ``database_url``; its engine is made at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.engine = create_engine(settings, database_url)
        try:
            yield
        finally:
            await app.state.engine.dispose()

    pages = _Console(settings)
    routes = [
        Route("/", pages.home),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/language", pages.language, methods=["POST"]),
        Route("/accounts", pages.accounts, methods=["GET"]),
        Route("/accounts/new", pages.new_account, methods=["GET", "POST"]),
        Route("/accounts/{name}/edit", pages.edit_account, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(_SecurityHeaders, https=settings.console_https),
        Middleware(
            SessionMiddleware,
            secret_key=session_secret(settings),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_HOURS * 3600,
            same_site="lax",
            https_only=settings.console_https,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
