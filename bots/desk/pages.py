"""The desk's pages: plain HTML shells whose small scripts use the JSON API. Anyone may
load a shell; every piece of data behind it needs a signed-in account."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"

PAGES = {
    "/desk/": "queue.html",
    "/desk/login": "login.html",
    "/desk/tickets/{ticket_id}": "ticket.html",
    "/desk/admin/personas": "personas.html",
    "/desk/admin/accounts": "accounts.html",
    "/desk/admin/audit": "audit.html",
}


def _page(name: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html", headers={"Cache-Control": "no-cache"})

    return endpoint  # type: ignore[return-value]


def page_routes() -> list[BaseRoute]:
    async def to_queue(request: Request) -> Response:
        return RedirectResponse("/desk/", status_code=308)

    routes: list[BaseRoute] = [Route("/desk", to_queue)]
    routes += [Route(path, _page(name), methods=["GET"]) for path, name in PAGES.items()]
    routes.append(Mount("/desk/static", StaticFiles(directory=STATIC), name="desk-static"))
    return routes
