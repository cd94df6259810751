"""A local Telegram Bot API server for tests, spoken to by the real python-telegram-bot.

It serves ``/bot<token>/<method>`` on 127.0.0.1 with the form-encoded parameters PTB
sends and answers in the Bot API's shape (``{"ok": true, "result": ...}``). Supported:
getMe, deleteWebhook, setWebhook, getWebhookInfo, getUpdates (offset confirms, long
polling waits up to ``timeout``), sendMessage (with an inline keyboard), editMessageText
(400 "message is not modified" for the same text and keyboard, 400 "message to edit not
found" for an unknown one, as Telegram answers; an edit without a keyboard removes it),
sendChatAction, answerCallbackQuery (once per query: a second answer or an unknown id is
a 400, as on Telegram) and editMessageReplyMarkup.
An unknown or revoked token gets 401; ``rate_limit_next_send`` / ``rate_limit_next_edit``
answer the next sendMessage / editMessageText with 429 and ``retry_after``.

A test injects updates with :class:`EmulatedBot` helpers (``dm``, ``group``,
``sticker``, ``photo``, ``document``, ``voice``, ``tap`` on a button of a sent message,
``push``; a text starting with ``/word`` carries a ``bot_command`` entity) and reads what
the bot did in ``sent`` / ``edits`` / ``actions`` / ``answered`` / ``markups`` /
``calls``, and what a chat shows now in ``visible`` (its keyboards in ``keyboards``).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.emulators import serve_locally

# parameters PTB JSON-encodes in the form; everything else is a plain string
_JSON_PARAMS = {
    "chat_id",
    "offset",
    "limit",
    "timeout",
    "allowed_updates",
    "reply_parameters",
    "message_thread_id",
    "drop_pending_updates",
    "max_connections",
    "link_preview_options",
    "message_id",
    "reply_markup",
}
GROUP_ID = -1001234567890


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int


@dataclass
class EmulatedBot:
    token: str
    id: int
    username: str
    first_name: str = "Support Bot"
    revoked: bool = False
    webhook: dict[str, Any] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    rate_limits: list[int] = field(default_factory=list)  # retry_after of the next 429s
    edit_rate_limits: list[int] = field(default_factory=list)  # ... of editMessageText
    messages: dict[tuple[int, int], str] = field(default_factory=dict)  # the bot's, as they read now
    keyboards: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)  # their reply_markup
    queries: set[str] = field(default_factory=set)  # callback query ids not answered yet
    blocked_by: set[int] = field(default_factory=set)  # chats whose user blocked the bot
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count = field(default_factory=lambda: itertools.count(5000))
    _news: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what the bot did ---------------------------------------------------------------
    @property
    def sent(self) -> list[dict[str, Any]]:
        """Parameters of each sendMessage the API accepted, in order."""
        return [c.params for c in self.calls if c.method == "sendMessage" and c.status == 200]

    @property
    def actions(self) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == "sendChatAction" and c.status == 200]

    @property
    def answered(self) -> list[dict[str, Any]]:
        """Parameters of each answerCallbackQuery the API accepted."""
        return [c.params for c in self.calls if c.method == "answerCallbackQuery" and c.status == 200]

    @property
    def markups(self) -> list[dict[str, Any]]:
        """Parameters of each editMessageReplyMarkup the API accepted."""
        return [c.params for c in self.calls if c.method == "editMessageReplyMarkup" and c.status == 200]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [p["text"] for p in self.sent if chat_id is None or p["chat_id"] == chat_id]

    @property
    def edits(self) -> list[dict[str, Any]]:
        """Parameters of each editMessageText the API accepted, in order."""
        return [c.params for c in self.calls if c.method == "editMessageText" and c.status == 200]

    def visible(self, chat_id: int) -> list[str]:
        """The texts of the bot's messages in ``chat_id`` as the customer sees them now."""
        return [text for (chat, _id), text in sorted(self.messages.items()) if chat == chat_id]

    def rate_limit_next_send(self, retry_after: int = 1) -> None:
        self.rate_limits.append(retry_after)

    def rate_limit_next_edit(self, retry_after: int = 1) -> None:
        self.edit_rate_limits.append(retry_after)

    # -- what users do ----------------------------------------------------------------------
    def user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update as Telegram would (the same dict twice = a redelivery)."""
        self.pending.append(update)
        self._news.set()
        return update

    def update(self, message: dict[str, Any], update_id: int | None = None) -> dict[str, Any]:
        return self.push({"update_id": update_id or next(self._ids), "message": message})

    def message(
        self,
        chat: dict[str, Any],
        text: str | None,
        *,
        user_id: int = 42,
        first_name: str = "Ada",
        is_bot: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": is_bot, "first_name": first_name},
            **extra,
        }
        if text is not None:
            msg["text"] = text
            entities = [
                {"type": "mention", "offset": _utf16_len(text[:i]), "length": _utf16_len(word)}
                for i, word in _words(text)
                if word.startswith("@") and len(word) > 1
            ]
            if text.startswith("/") and len(text) > 1:  # Telegram marks a command (with @bot)
                command = {"type": "bot_command", "offset": 0, "length": _utf16_len(text.split()[0])}
                entities.insert(0, command)
            if entities:
                msg["entities"] = entities
        return msg

    def dm(self, text: str, *, user_id: int = 42, **kw: Any) -> dict[str, Any]:
        update_id = kw.pop("update_id", None)
        chat = {"id": user_id, "type": "private", "first_name": kw.get("first_name", "Ada")}
        return self.update(self.message(chat, text, user_id=user_id, **kw), update_id)

    def group(
        self, text: str | None, *, reply_to_bot: bool = False, user_id: int = 43, **kw: Any
    ) -> dict[str, Any]:
        chat = {"id": GROUP_ID, "type": "supergroup", "title": "Customers"}
        if reply_to_bot:
            kw["reply_to_message"] = {
                "message_id": 4999,
                "date": int(time.time()),
                "chat": chat,
                "from": self.user(),
                "text": "How can I help?",
            }
        return self.update(self.message(chat, text, user_id=user_id, **kw))

    def photo(self, *, caption: str | None = None, user_id: int = 42) -> dict[str, Any]:
        """A photo in a DM, in the two sizes Telegram sends (smallest first)."""
        sizes = [
            {
                "file_id": "AgACAgIAAx-small",
                "file_unique_id": "AQADs",
                "width": 90,
                "height": 90,
                "file_size": 1200,
            },
            {
                "file_id": "AgACAgIAAx-large",
                "file_unique_id": "AQADl",
                "width": 800,
                "height": 800,
                "file_size": 64000,
            },
        ]
        extra: dict[str, Any] = {"photo": sizes} | ({"caption": caption} if caption else {})
        return self.update(self.message(self._private(user_id), None, user_id=user_id, **extra))

    def document(self, name: str = "invoice.pdf", *, user_id: int = 42) -> dict[str, Any]:
        document = {
            "file_id": "BQACAgIAAx-doc",
            "file_unique_id": "AgADd",
            "file_name": name,
            "mime_type": "application/pdf",
            "file_size": 48213,
        }
        return self.update(self.message(self._private(user_id), None, user_id=user_id, document=document))

    def voice(self, *, user_id: int = 42) -> dict[str, Any]:
        voice = {
            "file_id": "AwACAgIAAx-voice",
            "file_unique_id": "AgADv",
            "duration": 4,
            "mime_type": "audio/ogg",
            "file_size": 9100,
        }
        return self.update(self.message(self._private(user_id), None, user_id=user_id, voice=voice))

    def tap(
        self, sent: dict[str, Any], label: str, *, user_id: int = 42, first_name: str = "Ada"
    ) -> dict[str, Any]:
        """A tap on the button ``label`` of a message the bot sent (``sent``: its
        sendMessage parameters): a callback_query update. Push the returned update again
        to redeliver it."""
        chat_id = sent["chat_id"]
        message_id = next(
            i for (chat, i), text in self.messages.items() if chat == chat_id and text == sent["text"]
        )
        keyboard = self.keyboards.get((chat_id, message_id), {})
        buttons = [b for row in keyboard.get("inline_keyboard", []) for b in row]
        data = next(b["callback_data"] for b in buttons if b["text"] == label)
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": self.user()}
        message |= {"text": sent["text"], "reply_markup": keyboard}
        query_id = str(next(self._ids) * 1000 + user_id)
        self.queries.add(query_id)
        query = {
            "id": query_id,
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "message": message,
            "chat_instance": "-123456789",
            "data": data,
        }
        return self.push({"update_id": next(self._ids), "callback_query": query})

    def _private(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "type": "private", "first_name": "Ada"}

    def sticker(self, *, user_id: int = 42) -> dict[str, Any]:
        chat = {"id": user_id, "type": "private", "first_name": "Ada"}
        sticker = {
            "file_id": "CAACAgI",
            "file_unique_id": "AgAD",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
        }
        return self.update(self.message(chat, None, user_id=user_id, sticker=sticker))


class TelegramEmulator:
    """``async with TelegramEmulator() as tg: bot = tg.add_bot("123:abc", "shop_bot")``."""

    def __init__(self) -> None:
        self.bots: dict[str, EmulatedBot] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add_bot(self, token: str, username: str = "shop_bot", bot_id: int | None = None) -> EmulatedBot:
        bot = EmulatedBot(token=token, id=bot_id or int(token.split(":")[0]), username=username)
        self.bots[token] = bot
        return bot

    @property
    def base_url(self) -> str:
        """What TELEGRAM_API_BASE_URL is set to (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    async def __aenter__(self) -> TelegramEmulator:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for bot in self.bots.values():
            bot._news.set()  # release long polls
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        params = await _params(request)
        bot = self.bots.get(token)
        if bot is None or bot.revoked:
            return _error(401, "Unauthorized")
        status, body = await self._call(bot, method, params)
        bot.calls.append(Call(method, params, status))
        return web.json_response(body, status=status)

    async def _call(
        self, bot: EmulatedBot, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if method == "getMe":
            return _ok(
                {
                    **bot.user(),
                    "can_join_groups": True,
                    "can_read_all_group_messages": False,
                    "supports_inline_queries": False,
                }
            )
        if method == "deleteWebhook":
            bot.webhook = {}
            if params.get("drop_pending_updates"):
                bot.pending.clear()
            return _ok(True)
        if method == "setWebhook":
            bot.webhook = dict(params)
            return _ok(True)
        if method == "getWebhookInfo":
            return _ok(
                {
                    "url": bot.webhook.get("url", ""),
                    "has_custom_certificate": False,
                    "pending_update_count": len(bot.pending),
                }
            )
        if method == "getUpdates":
            if bot.webhook.get("url"):
                return 409, _fail(409, "Conflict: can't use getUpdates method while webhook is active")
            return _ok(await _long_poll(bot, params))
        if method == "sendChatAction":
            return _ok(True)
        if method in ("sendMessage", "editMessageText"):
            return _write(bot, method, params)
        if method == "answerCallbackQuery":
            query_id = str(params.get("callback_query_id"))
            if query_id not in bot.queries:  # answered already, or never sent
                return 400, _fail(
                    400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
                )
            bot.queries.discard(query_id)
            return _ok(True)
        if method == "editMessageReplyMarkup":
            key = (params.get("chat_id"), int(params.get("message_id") or 0))
            if key not in bot.messages:
                return 400, _fail(400, "Bad Request: message to edit not found")
            if params.get("reply_markup") == bot.keyboards.get(key):
                return 400, _fail(400, "Bad Request: message is not modified")
            bot.keyboards[key] = params.get("reply_markup") or {}  # type: ignore[index]
            return _ok(True)
        return 404, _fail(404, "Not Found")


def _write(bot: EmulatedBot, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """sendMessage and editMessageText: 429s first, then the checks Telegram makes."""
    limits = bot.rate_limits if method == "sendMessage" else bot.edit_rate_limits
    if limits:
        retry = limits.pop(0)
        return 429, _fail(429, f"Too Many Requests: retry after {retry}", parameters={"retry_after": retry})
    chat_id = params.get("chat_id")
    if chat_id in bot.blocked_by:
        return 403, _fail(403, "Forbidden: bot was blocked by the user")
    text = params.get("text", "")
    html_mode = params.get("parse_mode") == "HTML"  # the limit counts text after entity parsing
    visible = html.unescape(re.sub(r"<[^>]+>", "", text)) if html_mode else text
    if not visible.strip():
        return 400, _fail(400, "Bad Request: message text is empty")
    if len(visible) > 4096:
        return 400, _fail(400, "Bad Request: message is too long")
    assert isinstance(chat_id, int)
    if method == "editMessageText":
        key = (chat_id, int(params.get("message_id") or 0))
        if key not in bot.messages:
            return 400, _fail(400, "Bad Request: message to edit not found")
        if bot.messages[key] == text and params.get("reply_markup") == bot.keyboards.get(key):
            return 400, _fail(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        message_id = key[1]
    else:
        message_id = next(bot._message_ids)
    bot.messages[(chat_id, message_id)] = text
    if params.get("reply_markup"):
        bot.keyboards[(chat_id, message_id)] = params["reply_markup"]
    else:  # an edit without one removes the keyboard, as on Telegram
        bot.keyboards.pop((chat_id, message_id), None)
    chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
    message = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": bot.user()}
    if method == "editMessageText":
        message["edit_date"] = int(time.time())
    return _ok({**message, "text": text})


async def _long_poll(bot: EmulatedBot, params: dict[str, Any]) -> list[dict[str, Any]]:
    offset = int(params.get("offset") or 0)
    if offset:  # every update below the offset is confirmed and forgotten
        bot.pending = [u for u in bot.pending if u["update_id"] >= offset]
    deadline = time.monotonic() + float(params.get("timeout") or 0)
    while not bot.pending and time.monotonic() < deadline:
        bot._news.clear()
        try:
            await asyncio.wait_for(bot._news.wait(), deadline - time.monotonic())
        except TimeoutError:
            break
    return bot.pending[: int(params.get("limit") or 100)]


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        data = await request.json()
        return data if isinstance(data, dict) else {}
    raw = dict(await request.post()) if request.can_read_body else {}
    raw.update(request.query)
    return {k: json.loads(v) if k in _JSON_PARAMS else v for k, v in raw.items() if isinstance(v, str)}


def _ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def _fail(code: int, description: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description, **extra}


def _error(code: int, description: str) -> web.Response:
    return web.json_response(_fail(code, description), status=code)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _words(text: str) -> list[tuple[int, str]]:
    out, i = [], 0
    for word in text.split():
        i = text.index(word, i)
        out.append((i, word.rstrip(",.!?:;")))
        i += len(word)
    return out
