"""Telegram, through python-telegram-bot's ``Application``.

Long polling by default (``Updater.start_polling``); with a webhook URL the bot registers
it with a secret token and Telegram POSTs updates to :meth:`TelegramAdapter.routes`,
which the web app mounts. Either way one function turns an ``Update`` into an
:class:`IncomingMessage`, keyed on the bot's id and the ``update_id`` so a redelivered
update is answered once. Replies are sent as Telegram HTML converted from the engine's
light markdown (escaped; plain text if Telegram still refuses to parse it). Edited and
deleted messages are not subscribed to (``allowed_updates=["message"]``), so ignored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import html
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlparse

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import Message, MessageEntity, ReplyParameters, Update
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler

from adapters.base import Adapter
from core.bus import Bus
from core.delivery import RetryPolicy
from core.errors import AdapterAuthError, ConfigError, DeliveryError, RateLimited
from core.messages import IncomingMessage, Reply
from core.persona import PersonaStore

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what setWebhook accepts
_PTB_LOGGERS = (
    "httpx",
    "telegram",
    "telegram.Bot",
    "telegram.ext",
    "telegram.ext.ExtBot",
    "telegram.ext.Updater",
    "telegram.ext.Application",
)


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    token: str = field(repr=False)
    api_base_url: str = "https://api.telegram.org/bot"  # PTB base_url; the token is appended
    webhook_url: str | None = None  # set = webhook mode; its path is the route we serve
    webhook_secret: str | None = field(default=None, repr=False)
    poll_timeout: int = 10  # seconds a getUpdates long poll waits for news
    connect_timeout: float = 5.0
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not _TOKEN.match(self.token or ""):
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN does not look like a bot token (123456:ABC-...); copy it from @BotFather"
            )
        if urlparse(self.api_base_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"TELEGRAM_API_BASE_URL must be an http(s) URL such as "
                f"https://api.telegram.org/bot (got {self.api_base_url!r})"
            )
        if self.webhook_url is not None:
            url = urlparse(self.webhook_url)
            if url.scheme not in ("http", "https") or not url.netloc or url.path in ("", "/"):
                raise ConfigError(
                    "TELEGRAM_WEBHOOK_URL must be a full URL with a path, e.g. "
                    f"https://bot.example.com/telegram/webhook (got {self.webhook_url!r})"
                )
            if not _SECRET.match(self.webhook_secret or ""):
                raise ConfigError(
                    "TELEGRAM_WEBHOOK_SECRET is required in webhook mode: 1-256 "
                    "characters from A-Z, a-z, 0-9, _ and -"
                )

    @property
    def webhook_path(self) -> str:
        return urlparse(self.webhook_url or "").path or "/telegram/webhook"


class TelegramAdapter(Adapter):
    platform: ClassVar[str] = "telegram"
    max_message_chars: ClassVar[int] = 4096
    typing_interval: ClassVar[float] = 4.0  # Telegram shows "typing…" for ~5 s per call

    def __init__(
        self,
        bus: Bus,
        config: TelegramConfig,
        *,
        bot_id: str,
        personas: PersonaStore | None = None,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        super().__init__(bus, bot_id=bot_id, personas=personas, retry=retry)
        self.config = config
        self._app: Application | None = None
        self._redact = _Redact(config.token, config.webhook_secret)
        self._me_id = 0
        self._mention = re.compile(r"$^")  # replaced by "@username" once logged in

    # -- lifecycle -----------------------------------------------------------------------
    async def connect(self) -> None:
        cfg = self.config
        for name in _PTB_LOGGERS:  # httpx logs request URLs, and the token is in the URL
            logging.getLogger(name).addFilter(self._redact)
        builder = (
            Application.builder()
            .token(cfg.token)
            .base_url(cfg.api_base_url)
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .write_timeout(cfg.read_timeout)
            .get_updates_connect_timeout(cfg.connect_timeout)
            .get_updates_read_timeout(cfg.read_timeout)
            .job_queue(None)
        )
        app = builder.updater(None).build() if cfg.webhook_url else builder.build()
        app.add_handler(TypeHandler(Update, self._on_polled_update))
        self._app = app  # before polling starts, so the first update finds us connected
        try:
            await app.initialize()  # getMe: proves the token
            me = app.bot.bot
            self._me_id = me.id
            self._mention = re.compile(rf"@{re.escape(me.username or '')}\b", re.IGNORECASE)
            updates = [Update.MESSAGE]
            if cfg.webhook_url:
                await app.bot.set_webhook(
                    cfg.webhook_url, secret_token=cfg.webhook_secret, allowed_updates=updates
                )
            else:
                await app.start()
                await app.updater.start_polling(
                    timeout=dt.timedelta(seconds=cfg.poll_timeout), allowed_updates=updates
                )
        except InvalidToken:
            await self.disconnect()
            raise self._auth_error() from None
        except BadRequest as exc:
            await self.disconnect()
            raise ConfigError(
                f"Telegram refused TELEGRAM_WEBHOOK_URL: {self._redact.text(str(exc))}"
            ) from None
        except TelegramError as exc:
            await self.disconnect()
            raise DeliveryError(
                f"cannot reach the Telegram Bot API at {_host(cfg.api_base_url)} "
                f"({self._redact.text(str(exc))}); check TELEGRAM_API_BASE_URL "
                "and the network"
            ) from None
        log.info(
            "telegram: logged in as @%s (%s)",
            me.username,
            "webhook " + cfg.webhook_path if cfg.webhook_url else "long polling",
        )

    async def disconnect(self) -> None:
        app, self._app = self._app, None
        if app is not None:
            await _close(app)
        for name in _PTB_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)

    # -- intake --------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        """The webhook endpoint (the path of TELEGRAM_WEBHOOK_URL); none in polling mode."""
        if not self.config.webhook_url:
            return []
        return [Route(self.config.webhook_path, self.webhook, methods=["POST"])]

    async def webhook(self, request: Request) -> Response:
        """Check the secret on every request, queue the update, answer at once. A 503 when
        Redis is down makes Telegram redeliver; the update id keeps that idempotent."""
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            return JSONResponse({"error": f"missing {SECRET_HEADER}"}, status_code=401)
        if not hmac.compare_digest(given.encode(), (self.config.webhook_secret or "").encode()):
            return JSONResponse({"error": f"wrong {SECRET_HEADER}"}, status_code=403)
        if self._app is None:
            return JSONResponse({"error": "telegram adapter not connected"}, status_code=503)
        body = await request.body()
        try:
            data = json.loads(body) if len(body) <= MAX_UPDATE_BYTES else None
            update = Update.de_json(data, self._app.bot) if isinstance(data, dict) else None
        except (ValueError, TypeError, KeyError):
            update = None
        if update is None:
            return JSONResponse({"error": "body must be a Telegram Update object"}, status_code=400)
        try:
            await self.on_update(update)
        except (RedisError, OSError) as exc:
            log.warning("telegram: update %s not queued (%s); Telegram will resend it", update.update_id, exc)
            return JSONResponse({"error": "queue unavailable"}, status_code=503)
        return JSONResponse({"ok": True})

    async def _on_polled_update(self, update: object, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """PTB hands polled updates here one at a time; hold on while Redis is down so
        nothing fetched is lost (later updates wait in PTB's queue, in order)."""
        backoff = 0.5
        while self._app is not None and isinstance(update, Update):
            try:
                return await self.on_update(update)
            except (RedisError, OSError) as exc:
                log.warning("telegram: queue unavailable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def on_update(self, update: Update) -> None:
        """Turn one Update into an IncomingMessage (or a text-only prompt, or nothing)."""
        message = update.message
        user = message.from_user if message else None
        if message is None or user is None or user.is_bot:
            return  # not a new message (edit, channel post...), or a bot talking
        private = message.chat.type == ChatType.PRIVATE
        if not (private or self._addressed_to_me(message) or await self.answers_every_group_message()):
            return
        meta = {"message_id": str(message.message_id), "chat_type": message.chat.type}
        if message.is_topic_message and message.message_thread_id:
            meta["thread_id"] = str(message.message_thread_id)
        text = " ".join(self._mention.sub(" ", message.text or "").split())
        incoming = IncomingMessage(
            bot_id=self.bot_id,
            platform=self.platform,
            chat_id=str(message.chat.id),
            user_id=str(user.id),
            text=text,
            display_name=user.full_name,
            message_id=f"{message.chat.id}:{message.message_id}",
            meta=meta,
        )
        event_id = f"{self._me_id}:{update.update_id}"  # update ids are per bot
        if message.text is None:  # sticker, photo, voice, file...
            await self.reply_text_only(incoming, event_id)
        else:
            await self.submit(incoming, event_id)

    def _addressed_to_me(self, message: Message) -> bool:
        """An @mention of this bot (in the text or a caption) or a reply to this bot."""
        replied = message.reply_to_message
        if replied and replied.from_user and replied.from_user.id == self._me_id:
            return True
        kinds = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]
        found = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
        return any(
            (entity.user is not None and entity.user.id == self._me_id)
            or self._mention.search(text) is not None
            for entity, text in found.items()
        )

    # -- delivery ------------------------------------------------------------------------
    async def send_text(self, reply: Reply, text: str, part: int) -> None:
        chat_id: int | str = int(reply.chat_id)
        options: dict[str, Any] = {}
        if reply.meta.get("thread_id"):
            options["message_thread_id"] = int(reply.meta["thread_id"])
        if part == 0 and reply.meta.get("chat_type", ChatType.PRIVATE) != ChatType.PRIVATE:
            options["reply_parameters"] = ReplyParameters(
                int(reply.meta["message_id"]), allow_sending_without_reply=True
            )
        bot = self._bot()
        try:
            try:
                await bot.send_message(chat_id, to_telegram_html(text), parse_mode=ParseMode.HTML, **options)
            except ChatMigrated as exc:  # the group became a supergroup: same chat, new id
                await bot.send_message(
                    exc.new_chat_id, to_telegram_html(text), parse_mode=ParseMode.HTML, **options
                )
            except BadRequest as exc:
                if "parse entities" not in str(exc).lower():
                    raise
                await bot.send_message(chat_id, text, **options)
        except RetryAfter as exc:
            wait = exc.retry_after
            raise RateLimited(
                wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
            ) from None
        except InvalidToken:
            raise self._auth_error() from None
        except (Forbidden, BadRequest) as exc:  # blocked by the user, removed from the group...
            log.warning("telegram: reply to chat %s dropped: %s", reply.chat_id, exc)
        except TelegramError as exc:  # network, timeouts, 5xx: the outbox retries
            raise DeliveryError(f"telegram send failed: {self._redact.text(str(exc))}") from None

    async def send_typing(self, chat_id: str, meta: dict[str, str]) -> None:
        thread = int(meta["thread_id"]) if meta.get("thread_id") else None
        await self._bot().send_chat_action(int(chat_id), ChatAction.TYPING, message_thread_id=thread)

    def _bot(self) -> Any:
        if self._app is None:
            raise DeliveryError("telegram adapter is not connected")
        return self._app.bot

    def _auth_error(self) -> AdapterAuthError:
        return AdapterAuthError(
            f"TELEGRAM_BOT_TOKEN was rejected by the Bot API at {_host(self.config.api_base_url)} "
            "(401 Unauthorized); check the token from @BotFather"
        )


# -- formatting ------------------------------------------------------------------------------
_CODE = re.compile(r"```[^\n`]*\n?(.*?)```|`([^`\n]+)`", re.DOTALL)
_BOLD = re.compile(r"\*\*(?=\S)([^\n]+?)(?<=\S)\*\*")
_BULLET = re.compile(r"^(\s*)[-*] (?=\S)", re.MULTILINE)


def to_telegram_html(text: str) -> str:
    """Light markdown (**bold**, `code`, ``` blocks, - lists) as Telegram HTML, with every
    other character escaped, so nothing a customer or the model wrote can break markup."""
    out, pos = [], 0
    for match in _CODE.finditer(text):
        out.append(_inline(text[pos : match.start()]))
        block = match.group(1) is not None
        code = html.escape(match.group(1) if block else match.group(2), quote=False)
        out.append(f"<pre>{code}</pre>" if block else f"<code>{code}</code>")
        pos = match.end()
    out.append(_inline(text[pos:]))
    return "".join(out)


def _inline(text: str) -> str:
    text = _BULLET.sub(r"\1• ", html.escape(text, quote=False))
    return _BOLD.sub(r"<b>\1</b>", text)


# -- helpers -----------------------------------------------------------------------------------
class _Redact(logging.Filter):
    """Replaces the token and webhook secret in log records (httpx logs every URL)."""

    def __init__(self, *secrets: str | None) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, "<redacted>")
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            record.msg, record.args = self.text(message), None
        return True


def _host(url: str) -> str:
    return urlparse(url).netloc or url


async def _close(app: Application) -> None:
    """Stop polling and close PTB's HTTP clients, whatever state ``app`` reached."""
    try:
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()
        await app.bot.shutdown()  # initialize() may have failed before app was initialized
    except Exception:  # closing must not hide the error that brought us here
        log.exception("telegram: error while closing the Bot API client")
