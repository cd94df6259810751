"""Routes that follow the running adapters: a bot's web chat or webhook appears when its
adapter starts and goes when it stops, without restarting the web app.

Starlette fixes its route list at start; :class:`LiveRoutes` is one entry in that list
that asks, per request, which routes the running adapters have now. A request for a bot
nobody serves here falls through to :func:`unserved_routes`, which say why in one JSON
line (unknown, disabled, not on that platform, starting) instead of leaving a customer
waiting for a reply no process will deliver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from adapters.webjson import error

WHY_SCOPE_KEY = "chatbot.live_route"
WEB_CHAT_PATHS = ("/", "/api/chat", "/api/chat/history", "/api/chat/events", "/api/bot")


class LiveRoutes(BaseRoute):
    """Matches a request against ``current()``'s routes, read per request."""

    def __init__(self, current: Callable[[], list[BaseRoute]]) -> None:
        self.current = current

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] | None = None
        for route in self.current():
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, WHY_SCOPE_KEY: route}
            if match is Match.PARTIAL and partial is None:  # the path, another method
                partial = (match, {**child, WHY_SCOPE_KEY: route})
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope[WHY_SCOPE_KEY].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.current():
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)


Why = Callable[[str, str], Awaitable[tuple[int, str]]]  # (bot, platform) -> (status, line)


def unserved_routes(default_bot: str, why: Why, *, web: bool, slack: bool) -> list[BaseRoute]:
    """Fallbacks after :class:`LiveRoutes`: each bot's web chat paths (``web``) and Slack
    Events paths (``slack``), answering why nothing serves them here."""

    def answer(platform: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            bot = str(request.path_params.get("bot", default_bot))[:64]
            status, line = await why(bot, platform)
            response = error(status, line)
            if status == 503:
                response.headers["Retry-After"] = "5"
            return response

        return endpoint

    any_method = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    routes: list[BaseRoute] = []
    if web:
        routes.append(Route("/b/{bot}/{rest:path}", answer("web"), methods=any_method))
        routes += [Route(path, answer("web"), methods=any_method) for path in WEB_CHAT_PATHS]
    if slack:
        routes.append(Route("/slack/{bot}/events", answer("slack"), methods=["POST"]))
        routes.append(Route("/slack/events", answer("slack"), methods=["POST"]))
    return routes
