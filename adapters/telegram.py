"""Telegram, through python-telegram-bot's ``Application``.

Long polling by default (``Updater.start_polling``); with a webhook URL the bot registers
it with a secret token and Telegram POSTs updates to :meth:`TelegramAdapter.routes`,
which the web app mounts. Either way ``adapters.telegram_updates`` turns an ``Update``
(a message, a command, a photo, a tap on a quick reply) into an :class:`Event`, keyed
so a redelivered update is answered once. Replies are sent as Telegram HTML
(``adapters.markup``; plain text if Telegram still refuses to parse it), quick replies
as an inline keyboard. Edited and deleted messages are not subscribed to
(``allowed_updates=["message", "callback_query"]``), so ignored.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from telegram import Message, ReplyParameters, Update
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler

from adapters import telegram_updates as updates
from adapters.base import PlatformAdapter
from adapters.config import TelegramConfig, host
from adapters.failures import explain_refusal, retry_after_seconds
from adapters.interactive import buttons_for
from adapters.markup import to_telegram_html
from adapters.throttle import Limit
from adapters.webhooks import check_secret, queued, webhook_routes
from adapters.webjson import answers_bad_requests, error, read_object
from core.bus import Bus
from core.errors import AdapterAuthError, ConfigError, DeliveryError, PermanentDeliveryError, RateLimited
from core.messages import Reply

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024
_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]  # not edits, channel posts or reactions


class TelegramAdapter(PlatformAdapter[TelegramConfig]):
    platform: ClassVar[str] = "telegram"
    max_message_chars: ClassVar[int] = 4096
    typing_interval: ClassVar[float] = 4.0  # Telegram shows "typing…" for ~5 s per call
    sdk_loggers: ClassVar[tuple[str, ...]] = ("httpx", "telegram")  # httpx logs URLs, with the token
    # Bot FAQ: "avoid sending more than one message per second" in a chat, 20 a minute in a group
    stream_limits: ClassVar[tuple[Limit, ...]] = (Limit(1, 1.0), Limit(20, 60.0))

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
            if cfg.webhook_url:
                await app.bot.set_webhook(
                    cfg.webhook_url, secret_token=cfg.webhook_secret, allowed_updates=_UPDATES
                )
            elif app.updater is not None:  # polling mode always has one
                await app.start()
                poll = dt.timedelta(seconds=cfg.poll_timeout)
                await app.updater.start_polling(timeout=poll, allowed_updates=_UPDATES)
        except InvalidToken:
            raise self._auth_error() from None
        except BadRequest as exc:
            why = self.redact.text(str(exc))
            raise ConfigError(f"Telegram refused TELEGRAM_WEBHOOK_URL: {why}") from None
        except TelegramError as exc:
            raise self.unreachable("Telegram", cfg.api_base_url, exc, "TELEGRAM_API_BASE_URL") from None
        mode = f"webhook {cfg.webhook_path}" if cfg.webhook_url else "long polling"
        log.info("telegram: logged in as @%s (%s)", me.username, mode)

    async def disconnect(self) -> None:
        """Stop polling and close PTB's HTTP clients, whatever state the app reached."""
        app, self._app = self._app, None
        if app is None:
            return
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()
        await app.bot.shutdown()  # initialize() may have failed before app was initialized

    # -- intake --------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        """The webhook endpoint (the path of TELEGRAM_WEBHOOK_URL); none in polling mode."""
        return webhook_routes(self.config.webhook_path, self.webhook)

    @answers_bad_requests
    async def webhook(self, request: Request) -> Response:
        """Check the secret on every request, queue the update, answer at once (a 503 while
        Redis is down makes Telegram redeliver; the update id keeps that idempotent)."""
        check_secret(request, SECRET_HEADER, self.config.webhook_secret or "")
        if self._app is None:
            return error(503, "telegram adapter not connected")
        data = await read_object(request, MAX_UPDATE_BYTES)
        try:
            update = Update.de_json(data, self._app.bot)  # PTB 21 returns None for {}
        except (ValueError, TypeError, KeyError, AttributeError):  # a field of the wrong type
            update = None
        if update is None:
            return error(400, "body must be a Telegram Update object")
        return await queued(self.on_update(update, hold=False), f"telegram: update {update.update_id}")

    async def _on_polled_update(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """PTB hands polled updates here one at a time; while Redis is down the base holds
        this one (later updates wait in PTB's queue, in order), so nothing fetched is lost."""
        await self.on_update(update)

    async def on_update(self, update: Update, *, hold: bool = True) -> None:
        """Hand one Update to the base: a message (a command, a photo...) or a tap on a
        quick reply, which is answered on Telegram once, when intake took it."""
        query = update.callback_query
        if query is None:
            event = updates.message_event(update, self.bot_id, self._me_id, self._mention)
            if event is not None:  # None: not a new message (an edit, a channel post...)
                await self.accept(event, hold=hold)
            return
        tap = updates.tap_event(query, self.bot_id, self._me_id)
        if tap is None:
            await query.answer()  # a button already chosen: only end its spinner
        elif (await self.accept(tap[0], hold=hold)).taken:
            await updates.acknowledge(query, tap[1].label)

    # -- delivery ------------------------------------------------------------------------
    async def send_text(self, reply: Reply, text: str, part: int) -> str | None:
        chat_id: int | str = int(reply.chat_id)
        options: dict[str, Any] = {}
        if reply.meta.get("thread_id"):
            options["message_thread_id"] = int(reply.meta["thread_id"])
        if part == 0 and reply.meta.get("chat_type", ChatType.PRIVATE) != ChatType.PRIVATE:
            options["reply_parameters"] = ReplyParameters(
                int(reply.meta["message_id"]), allow_sending_without_reply=True
            )
        if keyboard := updates.keyboard(buttons_for(reply, part, self.max_message_chars)):
            options["reply_markup"] = keyboard
        bot = self.connected(self._app).bot

        async def send(**body: Any) -> Message:
            try:
                return await bot.send_message(chat_id, **body, **options)
            except ChatMigrated as exc:  # the group became a supergroup: same chat, new id
                return await bot.send_message(exc.new_chat_id, **body, **options)

        return str((await self._write(send, text)).message_id)

    async def edit_text(self, reply: Reply, message_id: str, text: str) -> None:
        bot = self.connected(self._app).bot
        keyboard = updates.keyboard(buttons_for(reply, 0, self.max_message_chars))  # a final's buttons

        async def edit(**body: Any) -> Any:
            try:
                return await bot.edit_message_text(
                    chat_id=int(reply.chat_id), message_id=int(message_id), reply_markup=keyboard, **body
                )
            except BadRequest as exc:  # Telegram refuses an edit to the same text: nothing to do
                if "not modified" not in str(exc).lower():
                    raise
                return None

        await self._write(edit, text)

    async def _write(self, call: Callable[..., Awaitable[Any]], text: str) -> Any:
        """``call`` with the text as Telegram HTML (as written if Telegram cannot parse it),
        Telegram's errors turned into the framework's."""
        try:
            try:
                return await call(text=to_telegram_html(text), parse_mode=ParseMode.HTML)
            except BadRequest as exc:
                if "parse entities" not in str(exc).lower():
                    raise
                return await call(text=text)
        except RetryAfter as exc:
            raise RateLimited(retry_after_seconds(exc.retry_after)) from None
        except InvalidToken:
            raise self._auth_error() from None
        except (Forbidden, BadRequest) as exc:  # blocked by the user, removed from the group...
            raise PermanentDeliveryError(explain_refusal("telegram", f"Telegram refused it: {exc}")) from None
        except TelegramError as exc:  # network, timeouts, 5xx: the outbox retries
            raise DeliveryError(f"telegram send failed: {self.redact.text(str(exc))}") from None

    async def send_typing(self, chat_id: str, meta: dict[str, str]) -> None:
        thread = int(meta["thread_id"]) if meta.get("thread_id") else None
        bot = self.connected(self._app).bot
        await bot.send_chat_action(int(chat_id), ChatAction.TYPING, message_thread_id=thread)

    def _auth_error(self) -> AdapterAuthError:
        return AdapterAuthError(
            f"TELEGRAM_BOT_TOKEN was rejected by the Bot API at {host(self.config.api_base_url)} "
            "(401 Unauthorized); check the token from @BotFather"
        )
