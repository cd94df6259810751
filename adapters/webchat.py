"""The built-in web chat: a page at ``/``, ``POST /api/chat``, its history and push channel
(each bot's under ``/b/{bot}/``, the default bot's also at ``/``: ``bots.fleet``).

A browser's identity is a random id in a cookie signed with the server's secret, so no
caller can write into, read or mute another customer's conversation by naming them.
Server-to-server callers holding an API token (``Authorization: Bearer``) may name the
``user`` explicitly. A message waits for the engine's reply (through the streams like any
platform) unless the support team holds the conversation: then it is accepted at once
(route ``human``), and what comes later (an agent's answer, a "still waiting" notice)
arrives on ``GET /api/chat/events`` (Server-Sent Events). That channel also carries each
reply as it is written (``partial`` events, ``adapters.streaming``): a page names each
message it sends (``ref``) and shows the partials of its own messages until the reply.
Quick replies come with a reply; the page sends a clicked one's ``choice`` back, and
``{"command": "human"}`` for its "Talk to a person" button (``adapters.interactive.asked``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from adapters.interactive import asked
from adapters.local import LocalAdapter
from adapters.push import PushChannels, reply_event, turn_event
from adapters.streaming import PagePartials
from adapters.webjson import (
    BadRequest,
    answers_bad_requests,
    bearer_token,
    clean_name,
    error,
    read_object,
    require_json,
)
from core.errors import ChatbotError
from core.history import Turn
from core.messages import ConversationKey, IncomingMessage, Reply

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "chatbot_uid"
MAX_USER_CHARS = 128
MAX_NAME_CHARS = 80
REF = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a page calls its message, to match partials


@dataclass(frozen=True, slots=True)
class WebChatConfig:
    secret_key: str
    cookie_secure: bool = True
    max_body_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class WebChatHooks:
    """What the composition root lends the web chat; each is optional."""

    token_owner: Callable[[str], Awaitable[str | None]] | None = None  # API token -> account
    transcript: Callable[[ConversationKey], Awaitable[list[Turn]]] | None = None
    held: Callable[[ConversationKey], Awaitable[bool]] | None = None  # the team holds it


class WebChatAdapter(LocalAdapter):
    platform: ClassVar[str] = "web"

    def __init__(
        self,
        *args: Any,
        config: WebChatConfig | None = None,
        hooks: WebChatHooks = WebChatHooks(),
        prefixes: tuple[str, ...] = ("",),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.prefixes = prefixes  # where the page and its API are served: "" and/or "/b/{bot}"
        self.config = config or WebChatConfig(secret_key=secrets.token_urlsafe(32))
        self.hooks = hooks
        self._signer = URLSafeSerializer(self.config.secret_key, salt="chatbot.webchat.uid")
        self.pages = PushChannels()  # each customer's open pages, by user id
        self.partials = PagePartials(self.bus, self.platform, self.pages)

    async def disconnect(self) -> None:
        await self.partials.close()
        await super().disconnect()

    def routes(self) -> list[BaseRoute]:
        """The page and its API under each prefix (the page calls its API by relative URLs)."""
        routes: list[BaseRoute] = []
        for prefix in self.prefixes:
            routes += [
                Route(prefix + "/", self.page, methods=["GET"]),
                Route(prefix + "/api/chat", self.chat, methods=["POST"]),
                Route(prefix + "/api/chat/history", self.history, methods=["GET"]),
                Route(prefix + "/api/chat/events", self.events, methods=["GET"]),
                Route(prefix + "/api/bot", self.bot, methods=["GET"]),
            ]
        return routes

    # -- identity ------------------------------------------------------------------------
    def browser_id(self, request: Request) -> str | None:
        """The id in the signed cookie, or None when absent or forged."""
        try:
            uid = self._signer.loads(request.cookies.get(COOKIE, ""))
        except BadSignature:
            return None
        return uid if isinstance(uid, str) else None

    def _set_browser_id(self, response: Response, uid: str) -> None:
        response.set_cookie(
            COOKIE,
            self._signer.dumps(uid),
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="lax",
            secure=self.config.cookie_secure,
        )

    async def _caller(self, request: Request, named: object) -> tuple[str, bool]:
        """(user id, whether a new browser id must be set) for this request."""
        token = bearer_token(request)
        if token is not None:
            owner = None
            if token and self.hooks.token_owner is not None:
                owner = await self.hooks.token_owner(token)
            if owner is None:
                raise BadRequest(401, "invalid API token; create one with `chatbot token create NAME`")
            user = clean_name(named or "", MAX_USER_CHARS)
            if not user:
                raise BadRequest(400, 'an API caller must name the customer: "user" (1-128 characters)')
            return user, False
        if named is not None:
            raise BadRequest(
                403,
                'an explicit "user" needs an API token (Authorization: Bearer ...); '
                "browsers are identified by their cookie",
            )
        uid = self.browser_id(request)
        return (uid, False) if uid else ("web-" + secrets.token_hex(12), True)

    async def _bot(self, value: object) -> str:
        """This adapter's bot; the path chooses the bot, so a ``bot`` naming another one is
        told where that bot is served instead of waiting for a reply nobody sends."""
        if value is None or value == "" or value == self.bot_id:
            return self.bot_id
        name = str(value)[:64]
        if self.personas is None or name not in await self.personas.get_many([name]):
            raise BadRequest(400, f"unknown bot {name!r}")
        raise BadRequest(400, f"this path serves bot {self.bot_id!r}; bot {name!r} is at /b/{name}/")

    # -- routes --------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        response = HTMLResponse((STATIC / "webchat.html").read_text(encoding="utf-8"))
        if self.browser_id(request) is None:
            self._set_browser_id(response, "web-" + secrets.token_hex(12))
        return response

    async def bot(self, request: Request) -> Response:
        """Name and greeting for the page header (from the live persona)."""
        if self.personas is None:
            return error(404, "no persona store")
        try:
            persona = await self.personas.get(self.bot_id)
        except ChatbotError as exc:
            return error(404, str(exc))
        about = {"bot_id": persona.bot_id, "display_name": persona.display_name, "greeting": persona.greeting}
        choices = [o.as_reply().to_api() for o in persona.quick_replies.greeting]
        return JSONResponse({**about, "quick_replies": choices})

    @answers_bad_requests
    async def chat(self, request: Request) -> Response:
        data = await read_object(request, self.config.max_body_bytes)
        if not isinstance(data.get("text", ""), str):
            raise BadRequest(400, 'body must be a JSON object with a string "text"')
        ref = data.get("ref", "")
        if ref and not (isinstance(ref, str) and REF.fullmatch(ref)):
            raise BadRequest(400, '"ref" must be 1-64 letters, digits, "-" or "_"')
        user, new_id = await self._caller(request, data.get("user"))
        if not new_id and "authorization" not in request.headers:
            require_json(request, "send the message as JSON")  # a cookie rides along: no cross-site forms
        bot_id = await self._bot(data.get("bot"))
        name = clean_name(data.get("name") or "", MAX_NAME_CHARS) or user[:MAX_NAME_CHARS]
        text, command, intent = asked(data)
        message = IncomingMessage(
            bot_id=bot_id,
            platform=self.platform,
            chat_id=user,
            user_id=user,
            text=text,
            display_name=name,
            meta={"ref": ref} if ref else {},
            command=command,
            intent=intent,
        )
        self.partials.follow(bot_id)
        if self.hooks.held is not None and await self.hooks.held(message.conversation):
            # A person answers later, on the push channel; the acknowledgement too, when due.
            await self.submit(message, message.message_id)
            body: dict[str, Any] = {"text": "", "route": "human", "intent": "", "confidence": 0.0}
            response: Response = JSONResponse({"user": user, **body, "in_reply_to": message.message_id})
        else:
            try:
                reply = await self.ask(message)
            except TimeoutError:
                response = error(504, "the bot did not answer in time; the reply will arrive on the page")
            else:
                response = JSONResponse({"user": user, **reply.to_api()})
        if new_id:
            self._set_browser_id(response, user)
        return response

    async def _reader(self, request: Request) -> tuple[str, str]:
        """(user, bot) for the read-only routes: the cookie, or a token's ``?user=``."""
        named = request.query_params.get("user")
        user, new_id = await self._caller(request, named)
        if new_id:
            raise BadRequest(401, "no web-chat identity yet: open the chat page first")
        return user, await self._bot(request.query_params.get("bot"))

    @answers_bad_requests
    async def history(self, request: Request) -> Response:
        user, bot_id = await self._reader(request)
        conv = ConversationKey(bot_id, self.platform, user, user)
        turns = await self.hooks.transcript(conv) if self.hooks.transcript else []
        return JSONResponse(
            {"user": user, "bot": bot_id, "turns": [turn_event(t) for t in turns]},
            headers={"Cache-Control": "no-store"},
        )

    @answers_bad_requests
    async def events(self, request: Request) -> Response:
        """The push channel: replies nobody waited for (an agent's, a reminder), and
        replies as they are written."""
        user, bot_id = await self._reader(request)
        self.partials.follow(bot_id)
        return self.pages.stream(user, "reply")

    # -- delivery ------------------------------------------------------------------------
    async def on_unsolicited(self, reply: Reply) -> None:
        # Nobody waits on the line: push it to the customer's open pages. A page opened
        # later reads it from the history, so nothing is kept here.
        self.pages.publish(reply.user_id, reply_event(reply))


def static_routes() -> list[BaseRoute]:
    """The page's script and style, shared by every bot's page."""
    return [Mount("/static/chat", StaticFiles(directory=STATIC), name="webchat-static")]
