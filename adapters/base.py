"""What every platform adapter shares, so each platform module stays thin.

An adapter does two things: turn a platform event into an :class:`IncomingMessage`
(``submit``), and deliver a :class:`Reply` (``send_text``). Everything else lives here:
idempotent intake keyed on the platform's event id, the typing indicator while the
engine works, splitting long replies under the platform's limit, resuming a split reply
after a retry without resending parts, and the outbound delivery loop with its
retry/backoff (``core.delivery.Outbox``).

Lifecycle: ``await adapter.start()`` / ``await adapter.stop()`` or ``async with``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from typing import ClassVar

from starlette.routing import BaseRoute

from core.bus import Bus
from core.delivery import Outbox, RetryPolicy
from core.errors import AdapterAuthError
from core.messages import IncomingMessage, Reply, Route
from core.persona import Messages, PersonaStore
from core.text import split_message

log = logging.getLogger(__name__)

TYPING_MAX_SECONDS = 60.0


class Adapter(ABC):
    platform: ClassVar[str]
    max_message_chars: ClassVar[int] = 4000
    typing_interval: ClassVar[float] = 0.0  # seconds between typing pings; 0 = none

    def __init__(
        self,
        bus: Bus,
        *,
        bot_id: str,
        personas: PersonaStore | None = None,
        consumer: str | None = None,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.bus = bus
        self.bot_id = bot_id
        self.personas = personas
        self.outbox = Outbox(
            bus,
            self.platform,
            bot_id,
            self._deliver_reply,
            consumer=consumer or f"{self.platform}-1",
            retry=retry,
        )
        self.error: str | None = None  # one line saying why the adapter stopped
        self._stop = asyncio.Event()
        self._outbox_task: asyncio.Task[None] | None = None
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._chunks_sent: dict[str, int] = {}
        self._group_policy: tuple[float, str] = (0.0, "mentions")

    # -- what a platform module implements -------------------------------------------
    @abstractmethod
    async def connect(self) -> None:
        """Log in and start receiving platform events (raise AdapterAuthError on a bad
        token, naming the environment variable)."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Stop receiving events and close connections."""

    @abstractmethod
    async def send_text(self, reply: Reply, text: str, part: int) -> None:
        """Send one chunk of a reply (``part`` 0 is the first). Raise RateLimited on a
        429, AdapterAuthError on rejected credentials, DeliveryError otherwise."""

    async def send_typing(self, chat_id: str, meta: dict[str, str]) -> None:
        """Show a typing indicator in a chat (platforms without one keep this no-op)."""

    def routes(self) -> list[BaseRoute]:
        """HTTP endpoints the platform calls (webhooks), mounted on the web app."""
        return []

    # -- intake ------------------------------------------------------------------------
    async def submit(self, message: IncomingMessage, event_id: str | None) -> bool:
        """Queue a customer's message for the engine, once per platform event id."""
        accepted = await self.bus.submit(message, event_id)
        if not accepted:
            log.info("%s: duplicate event %s ignored", self.platform, event_id)
        elif self.typing_interval > 0:
            self._start_typing(message.chat_id, message.meta)
        return accepted

    async def reply_text_only(self, message: IncomingMessage, event_id: str | None) -> None:
        """Answer a sticker/image/file/voice message politely, once per event, through the
        same outbound stream as every reply (so retries and rate limits apply)."""
        if event_id and not await self.bus.claim_event(message.platform, message.bot_id, event_id):
            return
        text = Messages().text_only
        if self.personas is not None:
            with contextlib.suppress(Exception):
                text = (await self.personas.get(self.bot_id)).messages.text_only
        await self.bus.publish_reply(Reply.to(message, text, Route.PROMPT))

    async def answers_every_group_message(self) -> bool:
        """The bot's persona decides whether group messages need a mention (cached 5 s,
        so an admin's change applies without restart)."""
        at, policy = self._group_policy
        if self.personas is not None and time.monotonic() - at > 5.0:
            with contextlib.suppress(Exception):
                policy = (await self.personas.get(self.bot_id)).group_replies
            self._group_policy = (time.monotonic(), policy)
        return policy == "all"

    # -- delivery ------------------------------------------------------------------------
    async def _deliver_reply(self, reply: Reply) -> None:
        chunks = split_message(reply.text, self.max_message_chars)
        done = self._chunks_sent.get(reply.reply_id, 0)
        for part in range(done, len(chunks)):
            await self.send_text(reply, chunks[part], part)
            self._chunks_sent[reply.reply_id] = part + 1  # a retry resumes after this part
        self._chunks_sent.pop(reply.reply_id, None)
        self._stop_typing(reply.chat_id)

    def _start_typing(self, chat_id: str, meta: dict[str, str]) -> None:
        if chat_id in self._typing and not self._typing[chat_id].done():
            return

        async def keep_typing() -> None:
            deadline = time.monotonic() + TYPING_MAX_SECONDS
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    await self.send_typing(chat_id, meta)
                await asyncio.sleep(self.typing_interval)

        self._typing[chat_id] = asyncio.create_task(keep_typing())

    def _stop_typing(self, chat_id: str) -> None:
        task = self._typing.pop(chat_id, None)
        if task:
            task.cancel()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._stop.clear()
        await self.connect()
        self._outbox_task = asyncio.create_task(self._run_outbox(), name=f"{self.platform}-outbox")

    async def _run_outbox(self) -> None:
        try:
            await self.outbox.run(self._stop)
        except AdapterAuthError as exc:
            self.error = str(exc)
            log.error("%s adapter stopped: %s", self.platform, exc)
            with contextlib.suppress(Exception):
                await self.disconnect()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._typing.values():
            task.cancel()
        self._typing.clear()
        if self._outbox_task:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._outbox_task, timeout=5)
        await self.disconnect()

    @property
    def running(self) -> bool:
        return self._outbox_task is not None and not self._outbox_task.done() and self.error is None

    async def __aenter__(self) -> Adapter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
