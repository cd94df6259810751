"""The built-in web chat: a page at ``/`` and ``POST /api/chat``.

Each browser gets a stable anonymous id in a cookie; the JSON API also accepts an
explicit ``user``. The request waits for the engine's reply (through the streams like
any platform) and returns it with its intent, confidence and route.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.local import LocalAdapter
from core.errors import ChatbotError
from core.messages import IncomingMessage

PAGE = Path(__file__).resolve().parent / "static" / "webchat.html"
COOKIE = "chatbot_uid"
MAX_BODY = 64 * 1024


class WebChatAdapter(LocalAdapter):
    platform: ClassVar[str] = "web"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.page, methods=["GET"]),
            Route("/api/chat", self.chat, methods=["POST"]),
            Route("/api/chat/pending", self.pending, methods=["GET"]),
            Route("/api/bot", self.bot, methods=["GET"]),
        ]

    async def bot(self, request: Request) -> Response:
        """Name and greeting for the page header (from the live persona)."""
        if self.personas is None:
            return _error(404, "no persona store")
        try:
            persona = await self.personas.get(self.bot_id)
        except ChatbotError as exc:
            return _error(404, str(exc))
        return JSONResponse(
            {"bot_id": persona.bot_id, "display_name": persona.display_name, "greeting": persona.greeting}
        )

    async def page(self, request: Request) -> Response:
        response = HTMLResponse(PAGE.read_text(encoding="utf-8"))
        if COOKIE not in request.cookies:
            response.set_cookie(
                COOKIE, "web-" + secrets.token_hex(8), max_age=365 * 24 * 3600, httponly=True, samesite="lax"
            )
        return response

    async def chat(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, f"request body over {MAX_BODY} bytes")
        try:
            data = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'body must be JSON: {"user": "...", "text": "..."}')
        if not isinstance(data, dict) or not isinstance(data.get("text", ""), str):
            return _error(400, 'body must be a JSON object with a string "text"')
        user = data.get("user") or request.cookies.get(COOKIE)
        if not isinstance(user, str) or not user.strip() or len(user) > 128:
            return _error(400, 'give "user" (1-128 characters) or open / first to get a browser id')
        message = IncomingMessage(
            bot_id=str(data.get("bot") or self.bot_id),
            platform=self.platform,
            chat_id=user,
            user_id=user,
            text=data.get("text", ""),
            display_name=str(data.get("name") or user)[:80],
        )
        try:
            reply = await self.ask(message)
        except TimeoutError:
            return _error(504, "the bot did not answer in time; the reply will arrive at /api/chat/pending")
        return JSONResponse({"user": user, **reply.to_api()})

    async def pending(self, request: Request) -> Response:
        user = request.query_params.get("user") or request.cookies.get(COOKIE) or ""
        return JSONResponse({"replies": [r.to_api() for r in self.take_unclaimed(user)]})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
