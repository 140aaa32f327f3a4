"""The overview page, the console's home: the queue, the accounts' caps and pauses, failures."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.console.i18n import translations
from worker.console.overview import age_words, read_overview
from worker.console.pages import PageKit

__all__ = ["routes"]


class OverviewPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit

    async def overview(self, request: Request) -> Response:
        kit = self._kit
        user = await kit.reader(request)
        if isinstance(user, Response):
            return user
        async with kit.repository(request) as repository:
            overview = await read_overview(repository)
        gettext = translations(kit.language(request)).gettext
        oldest = overview.backlog.oldest_due_age
        return kit.render(
            request,
            "overview.html",
            user=user,
            overview=overview,
            oldest_due=None if oldest is None else age_words(oldest, gettext),
        )


def routes(kit: PageKit) -> list[Route]:
    pages = OverviewPages(kit)
    return [Route("/overview", pages.overview, methods=["GET"])]
