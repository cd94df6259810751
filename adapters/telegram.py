"""Telegram, through python-telegram-bot's ``Application``.

Long polling by default (``Updater.start_polling``); with a webhook URL the bot registers
it with a secret token and Telegram POSTs updates to :meth:`TelegramAdapter.routes`,
which the web app mounts. Either way one function turns an ``Update`` into an
:class:`IncomingMessage`, keyed on the bot's id and the ``update_id`` so a redelivered
update is answered once. Replies are sent as Telegram HTML (``adapters.markup``; plain
text if Telegram still refuses to parse it). Edited and deleted messages are not
subscribed to (``allowed_updates=["message"]``), so ignored.
"""

from __future__ import annotations

import datetime as dt
import hmac
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

from adapters.base import Event, PlatformAdapter, is_url, require
from adapters.markup import to_telegram_html
from core.bus import Bus
from core.errors import AdapterAuthError, ConfigError, DeliveryError, PermanentDeliveryError, RateLimited
from core.messages import IncomingMessage, Reply

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what setWebhook accepts
_PTB_CHILDREN = ("Bot", "ext", "ext.ExtBot", "ext.Updater", "ext.Application")
_PTB_LOGGERS = ("httpx", "telegram", *(f"telegram.{name}" for name in _PTB_CHILDREN))


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
        require(
            bool(_TOKEN.match(self.token or "")),
            "TELEGRAM_BOT_TOKEN does not look like a bot token (123456:ABC-...); copy it from @BotFather",
        )
        require(
            is_url(self.api_base_url),
            "TELEGRAM_API_BASE_URL must be an http(s) URL such as "
            f"https://api.telegram.org/bot (got {self.api_base_url!r})",
        )
        if self.webhook_url is not None:
            require(
                is_url(self.webhook_url, path=True),
                "TELEGRAM_WEBHOOK_URL must be a full URL with a path, e.g. "
                f"https://bot.example.com/telegram/webhook (got {self.webhook_url!r})",
            )
            require(
                bool(_SECRET.match(self.webhook_secret or "")),
                "TELEGRAM_WEBHOOK_SECRET is required in webhook mode: 1-256 characters from "
                "A-Z, a-z, 0-9, _ and -",
            )

    @property
    def webhook_path(self) -> str:
        return urlparse(self.webhook_url or "").path or "/telegram/webhook"


class TelegramAdapter(PlatformAdapter[TelegramConfig]):
    platform: ClassVar[str] = "telegram"
    max_message_chars: ClassVar[int] = 4096
    typing_interval: ClassVar[float] = 4.0  # Telegram shows "typing…" for ~5 s per call
    sdk_loggers: ClassVar[tuple[str, ...]] = _PTB_LOGGERS  # httpx logs URLs, and the token is in them

    def __init__(self, bus: Bus, config: TelegramConfig, **options: Any) -> None:
        super().__init__(bus, config, **options)
        self._app: Application | None = None
        self._me_id = 0
        self._mention = re.compile(r"$^")  # replaced by "@username" once logged in

    # -- lifecycle -----------------------------------------------------------------------
    async def connect(self) -> None:
        cfg = self.config
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
            elif app.updater is not None:  # polling mode always has one
                await app.start()
                await app.updater.start_polling(
                    timeout=dt.timedelta(seconds=cfg.poll_timeout), allowed_updates=updates
                )
        except InvalidToken:
            raise self._auth_error() from None
        except BadRequest as exc:
            raise ConfigError(
                f"Telegram refused TELEGRAM_WEBHOOK_URL: {self.redact.text(str(exc))}"
            ) from None
        except TelegramError as exc:
            why = f"{self.redact.text(str(exc))}); check TELEGRAM_API_BASE_URL and the network"
            raise DeliveryError(
                f"cannot reach the Telegram Bot API at {_host(cfg.api_base_url)} ({why}"
            ) from None
        mode = f"webhook {cfg.webhook_path}" if cfg.webhook_url else "long polling"
        log.info("telegram: logged in as @%s (%s)", me.username, mode)

    async def disconnect(self) -> None:
        app, self._app = self._app, None
        if app is not None:
            await _close(app)

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
            await self.on_update(update, hold=False)
        except (RedisError, OSError) as exc:
            log.warning("telegram: update %s not queued (%s); Telegram will resend it", update.update_id, exc)
            return JSONResponse({"error": "queue unavailable"}, status_code=503)
        return JSONResponse({"ok": True})

    async def _on_polled_update(self, update: object, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """PTB hands polled updates here one at a time; while Redis is down the base holds
        this one (later updates wait in PTB's queue, in order), so nothing fetched is lost."""
        if isinstance(update, Update):
            await self.on_update(update)

    async def on_update(self, update: Update, *, hold: bool = True) -> None:
        """Turn one Update into an Event for the base (a message, or a sticker...)."""
        message = update.message
        user = message.from_user if message else None
        if message is None or user is None:
            return  # not a new message: an edit, a channel post...
        meta = {"message_id": str(message.message_id), "chat_type": message.chat.type}
        if message.is_topic_message and message.message_thread_id:
            meta["thread_id"] = str(message.message_thread_id)
        incoming = IncomingMessage(
            bot_id=self.bot_id,
            platform=self.platform,
            chat_id=str(message.chat.id),
            user_id=str(user.id),
            text=" ".join(self._mention.sub(" ", message.text or "").split()),
            display_name=user.full_name,
            message_id=f"{message.chat.id}:{message.message_id}",
            meta=meta,
        )
        event = Event(
            incoming,
            event_id=f"{self._me_id}:{update.update_id}",  # update ids are per bot
            from_bot=user.is_bot,
            direct=message.chat.type == ChatType.PRIVATE,
            addressed=not user.is_bot and self._addressed_to_me(message),
            text_only=message.text is None,  # sticker, photo, voice, file...
        )
        await self.accept(event, hold=hold)

    def _addressed_to_me(self, message: Message) -> bool:
        """An @mention of this bot (in the text or a caption) or a reply to this bot."""
        replied = message.reply_to_message
        if replied and replied.from_user and replied.from_user.id == self._me_id:
            return True
        kinds: list[str | None] = [
            MessageEntity.MENTION,
            MessageEntity.TEXT_MENTION,
            MessageEntity.BOT_COMMAND,
        ]
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
        bot, marked_up = self._bot(), to_telegram_html(text)
        try:
            try:
                await bot.send_message(chat_id, marked_up, parse_mode=ParseMode.HTML, **options)
            except ChatMigrated as exc:  # the group became a supergroup: same chat, new id
                await bot.send_message(exc.new_chat_id, marked_up, parse_mode=ParseMode.HTML, **options)
            except BadRequest as exc:
                if "parse entities" not in str(exc).lower():
                    raise
                await bot.send_message(chat_id, text, **options)
        except RetryAfter as exc:
            wait = exc.retry_after
            raise RateLimited(wait.total_seconds() if isinstance(wait, dt.timedelta) else wait) from None
        except InvalidToken:
            raise self._auth_error() from None
        except (Forbidden, BadRequest) as exc:  # blocked by the user, removed from the group...
            raise PermanentDeliveryError(f"Telegram refused it: {exc}") from None
        except TelegramError as exc:  # network, timeouts, 5xx: the outbox retries
            raise DeliveryError(f"telegram send failed: {self.redact.text(str(exc))}") from None

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


# -- helpers -----------------------------------------------------------------------------------
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
