"""The console's ASGI app: the page groups' routes, the session and the security headers.

:func:`create_app` takes the settings and the database URL; ``mailworker console`` serves it
with uvicorn. Every page needs a signed-in user; every POST needs the session's CSRF token
(403 without it). Nothing secret reaches a page, a URL or a log line.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.console import account_pages, overview_pages, queue_pages, session_pages, test_pages
from worker.console.auth import session_secret
from worker.console.pages import HERE, PageKit
from worker.db import create_engine
from worker.settings import Settings

__all__ = ["SECURITY_HEADERS", "SESSION_COOKIE", "create_app"]

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


def create_app(settings: Settings, database_url: str) -> Starlette:
    """The console over the database at ``database_url``; its engine is made at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.engine = create_engine(settings, database_url)
        try:
            yield
        finally:
            await app.state.engine.dispose()

    kit = PageKit(settings)
    routes: list[BaseRoute] = [
        *session_pages.routes(kit),
        *account_pages.routes(kit),
        *overview_pages.routes(kit),
        *queue_pages.routes(kit),
        *test_pages.routes(kit),
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
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: kit.http_error},  # its words in the page's language
        lifespan=lifespan,
    )
