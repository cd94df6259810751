"""What every platform adapter shares, so each platform module stays thin.

An adapter does two things: read a platform event (a message, a command, a tap on a
quick reply) into an :class:`Event` and hand it to :meth:`Adapter.accept`, and deliver
a :class:`Reply` (``send_text``). Everything else lives here: who is answered (not
bots; private chats; in groups, mentions unless the persona answers every message),
idempotent intake keyed on the platform's event id (a tap is acknowledged on the
platform only when it was taken now: ``Intake.taken``), holding an event while Redis is
down, the typing indicator while the engine works, splitting long replies under the
platform's limit (resuming a split reply after a retry, a restart or in another
process without resending parts: the count of sent parts is kept in Redis), the
outbound delivery loop (``core.delivery.Outbox``), stopping with one line
(:meth:`Adapter.fail`), and edit-in-place streaming for platforms that set
``stream_limits`` (``adapters.streaming``). For the platform module it runs an SDK's
receive loop in the background (:meth:`Adapter.receive_in_background`), closes its
clients without letting a close error hide another, and keeps the config's secrets out
of the SDK's logs (``adapters.redact``). Configs and their checks live in
``adapters.config``, what a failed call means for delivery in ``adapters.failures``,
webhook endpoints in ``adapters.webhooks``.

Lifecycle: ``await adapter.start()`` / ``await adapter.stop()`` or ``async with``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, fields, is_dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from starlette.routing import BaseRoute
from tenacity import AsyncRetrying, RetryCallState

from adapters.config import host, with_names
from adapters.redact import RedactSecrets
from adapters.streaming import EditStreamer
from adapters.throttle import Limit
from core.admission import Verdict
from core.bus import Bus
from core.cluster import REDIS_DOWN  # what a Redis outage raises from the bus
from core.delivery import DEFAULT_DELIVERY_BACKOFF, Outbox
from core.errors import AdapterAuthError, ChatbotError, DeliveryError, PermanentDeliveryError
from core.messages import IncomingMessage, Reply, Route
from core.persona import Messages, PersonaStore
from core.retry import Backoff, retrying
from core.text import split_message

log = logging.getLogger(__name__)

TYPING_MAX_SECONDS = 60.0
ClientT = TypeVar("ClientT")  # a platform SDK's client


@dataclass(frozen=True, slots=True)
class Event:
    """One platform event as its platform module read it; the base decides what to do."""

    message: IncomingMessage
    event_id: str | None  # the platform's id for this event: a redelivery is taken once
    from_bot: bool = False  # another bot, a webhook, ourselves or the platform: never answered
    direct: bool = False  # a private chat: always answered
    addressed: bool = False  # mentions or replies to the bot, commands, taps: answered in groups too


class Intake(StrEnum):
    """What became of one event (also the key of ``Adapter.stats``)."""

    IGNORED = "ignored"
    SUBMITTED = "submitted"
    DUPLICATE = "duplicates"
    SLOWED = "slowed"  # over the per-user rate limit: answered with the persona's slow_down text
    BUSY = "busy"  # the intake backlog is over its bound: answered with the persona's busy text

    @property
    def taken(self) -> bool:
        """Taken now, not ignored nor a redelivery: the moment to acknowledge a tap or a
        command on the platform (once, however often the platform delivers it)."""
        return self not in (Intake.IGNORED, Intake.DUPLICATE)


class Adapter(ABC):
    platform: ClassVar[str]
    max_message_chars: ClassVar[int] = 4000
    typing_interval: ClassVar[float] = 0.0  # seconds between typing pings; 0 = none
    sdk_loggers: ClassVar[tuple[str, ...]] = ()  # loggers (and their children) that may print a secret
    stream_limits: ClassVar[tuple[Limit, ...]] = ()  # set: edit-in-place streaming, this throttled

    def __init__(
        self,
        bus: Bus,
        *,
        bot_id: str,
        personas: PersonaStore | None = None,
        consumer: str | None = None,
        backoff: Backoff = DEFAULT_DELIVERY_BACKOFF,
    ) -> None:
        self.bus = bus
        self.bot_id = bot_id
        self.personas = personas
        self.backoff = backoff
        self.outbox = Outbox(
            bus,
            self.platform,
            bot_id,
            self._deliver_reply,
            consumer=consumer or f"{self.platform}-1",
            backoff=backoff,
        )
        self.redact = RedactSecrets()  # a platform adapter names its config's secrets
        self.error: str | None = None  # one line saying why the adapter stopped
        self.setting_names: dict[str, str] = {}  # default variable -> this bot's (bots.credentials)
        self.failure: ChatbotError | None = None  # the error behind ``error``, to re-raise
        self.stats: Counter[str] = Counter()  # received, and each Intake outcome
        self._stop = asyncio.Event()
        self._outbox_task: asyncio.Task[None] | None = None
        self._receiver: asyncio.Task[None] | None = None  # an SDK's receive loop, if it needs one
        self._filtered: list[logging.Logger] = []  # where self.redact is installed
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._group_policy: tuple[float, str] = (0.0, "mentions")
        self.streamer = EditStreamer(self, self.stream_limits) if self.stream_limits else None
        self._streaming: asyncio.Task[None] | None = None

    # -- what a platform module implements -------------------------------------------
    @abstractmethod
    async def connect(self) -> None:
        """Log in and start receiving platform events (raise AdapterAuthError on a bad
        token, naming the environment variable). On any error ``disconnect`` follows."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Stop receiving events and close connections."""

    @abstractmethod
    async def send_text(self, reply: Reply, text: str, part: int) -> str | None:
        """Send one chunk of a reply (``part`` 0 is the first); return the platform's id of
        the message (None if it has none). Raise RateLimited on a 429, AdapterAuthError on
        rejected credentials, PermanentDeliveryError when the platform refuses this reply
        for good, DeliveryError otherwise."""

    async def edit_text(self, reply: Reply, message_id: str, text: str) -> None:
        """Replace the text of a message sent earlier, written as ``send_text`` writes it
        (platforms with ``stream_limits``). An unchanged text is no error; errors as for
        ``send_text`` (PermanentDeliveryError: the message is gone)."""
        raise NotImplementedError(f"{self.platform} cannot edit messages")

    def receive_failure(self, exc: Exception) -> ChatbotError:
        """Why the receive loop (``receive_in_background``) ended, in one line naming what
        to fix; a platform that knows its SDK's errors says more."""
        why = self.redact.text(f"{type(exc).__name__}: {exc}")
        return DeliveryError(f"{self.platform} stopped receiving events: {why}")

    async def send_typing(self, chat_id: str, meta: dict[str, str]) -> None:
        """Show a typing indicator in a chat (platforms without one keep this no-op)."""
        return None

    def routes(self) -> list[BaseRoute]:
        """HTTP endpoints the platform calls (webhooks), mounted on the web app."""
        return []

    # -- what the base lends a platform module -------------------------------------------
    def connected(self, client: ClientT | None) -> ClientT:
        """``client`` for a send; while it is not connected, a DeliveryError the outbox retries."""
        if client is None:
            raise DeliveryError(f"the {self.platform} adapter is not connected")
        return client

    def unreachable(self, service: str, url: str, exc: BaseException, setting: str) -> DeliveryError:
        """One line for an API that did not answer: where, why (secrets redacted: an SDK's
        error text may hold a token), and which setting to check."""
        why = self.redact.text(f"{type(exc).__name__}: {exc}")
        return DeliveryError(
            f"cannot reach {service} at {host(url)} ({why}); check {setting} and the network"
        )

    async def receive_in_background(
        self, receive: Coroutine[Any, Any, None], ready: asyncio.Event, timeout: float
    ) -> bool:
        """For ``connect``: run an SDK's receive loop (a gateway) as a task and wait until it
        sets ``ready``, fails, or ``timeout`` passes. A failure, now or later, stops the
        adapter with ``receive_failure``'s one line and disconnects; one during the wait is
        raised here. Returns whether the loop became ready in time."""
        self._receiver = asyncio.create_task(self._receive(receive), name=f"{self.platform}-receiver")
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({waiting, self._receiver}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self.failure is not None:
            raise self.failure
        return ready.is_set()

    async def _receive(self, receive: Coroutine[Any, Any, None]) -> None:
        try:
            await receive
        except Exception as exc:  # one line for the operator, not a traceback
            self.fail(self.receive_failure(exc))
            await self._disconnect()  # an SDK may leave its HTTP session open after a fatal close

    # -- intake ------------------------------------------------------------------------
    async def accept(self, event: Event, *, hold: bool = True) -> Intake:
        """Decide on one event and queue it. While Redis is down the event is held and
        retried (the platform already handed it over) until Redis returns or the adapter
        stops; with ``hold=False`` the Redis error is raised, for a webhook to answer
        503 so that the platform resends."""
        self.stats["received"] += 1
        if event.from_bot or not (
            event.direct or event.addressed or await self.answers_every_group_message()
        ):
            outcome = Intake.IGNORED
        elif hold:
            outcome = await self._holding()(self.submit, event.message, event.event_id)
        else:
            outcome = await self.submit(event.message, event.event_id)
        self.stats[outcome.value] += 1
        return outcome

    def _holding(self) -> AsyncRetrying:
        """Retry while Redis is down; give up (raising) once the adapter is stopping."""

        async def pause(seconds: float) -> None:  # a stop ends the wait at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)

        def stopping(_state: RetryCallState) -> bool:
            return self._stop.is_set()

        policy = retrying(f"{self.platform} intake", retry_on=REDIS_DOWN, backoff=self.backoff)
        return policy.copy(stop=stopping, sleep=pause)

    async def submit(self, message: IncomingMessage, event_id: str | None) -> Intake:
        """Queue a customer's message for the engine, once per platform event id. Over the
        user's rate limit, or while the intake backlog is over its bound
        (``Bus.admit``), the persona's slow_down or busy text answers at once instead and
        the message never reaches the models."""
        verdict = await self.bus.admit(message)
        if verdict is not Verdict.ADMIT:
            if event_id and not await self.bus.claim_event(message.platform, message.bot_id, event_id):
                return Intake.DUPLICATE
            text = await self.persona_text(verdict.value)
            await self.answer_now(Reply.to(message, text, Route.PROMPT))
            log.info("%s: message from %s answered with %s", self.platform, message.user_id, verdict.value)
            return Intake.SLOWED if verdict is Verdict.SLOW_DOWN else Intake.BUSY
        if not await self.bus.submit(message, event_id):
            log.info("%s: duplicate event %s ignored", self.platform, event_id)
            return Intake.DUPLICATE
        if self.typing_interval > 0:
            self._start_typing(message.chat_id, message.meta)
        return Intake.SUBMITTED

    async def answer_now(self, reply: Reply) -> None:
        """Send a reply the engine did not write (through the outbound stream, so retries
        and rate limits apply); an adapter whose caller waits on the line hands it over."""
        await self.bus.publish_reply(reply)

    async def persona_text(self, name: str) -> str:
        """One of the persona's fixed ``messages`` (the default when it cannot be read)."""
        text: str = getattr(Messages(), name)
        if self.personas is not None:
            with contextlib.suppress(Exception):
                text = getattr((await self.personas.get(self.bot_id)).messages, name)
        return text

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
        """Send the parts the platform has not accepted yet. The count of accepted parts
        lives in Redis (``Bus.parts_sent``), written right after each part, so a retry, a
        restart or another process that claims the entry resumes after them."""
        chunks = split_message(reply.text, self.max_message_chars)
        try:
            done = await self.bus.parts_sent(reply)
            if done == 0 and chunks and self.streamer and await self.streamer.finish(reply, chunks[0]):
                done = 1  # the streamed message now shows part 0
                await self._holding()(self.bus.mark_parts_sent, reply, done)
            for part in range(done, len(chunks)):
                await self.send_text(reply, chunks[part], part)
                await self._holding()(self.bus.mark_parts_sent, reply, part + 1)
        except PermanentDeliveryError:  # the outbox drops the rest (and the stored count)
            self._stop_typing(reply.chat_id)
            raise
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
    def fail(self, error: ChatbotError) -> None:
        """Stop this adapter with one line (the others keep running); its replies stay
        queued in Redis for the next start."""
        self.failure = error
        self.error = self.named(str(error))
        log.error("%s adapter of bot %s stopped: %s", self.platform, self.bot_id, self.error)
        self._stop.set()

    def named(self, line: str) -> str:
        return with_names(line, self.setting_names)

    async def start(self) -> None:
        self._stop.clear()
        self.error = self.failure = None  # a restart after a failure starts clean
        self._filtered = self._sdk_loggers()
        for logger in self._filtered:
            logger.addFilter(self.redact)
        try:
            await self.connect()
        except BaseException:  # a half-made connection (a client, a session) is closed
            await self._disconnect()
            raise
        self._outbox_task = asyncio.create_task(self._run_outbox(), name=f"{self.platform}-outbox")
        if self.streamer is not None:
            self._streaming = asyncio.create_task(self.streamer.run(), name=f"{self.platform}-streaming")

    async def _run_outbox(self) -> None:
        try:
            await self.outbox.run(self._stop)
        except AdapterAuthError as exc:
            self.fail(exc)
            await self._disconnect()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._typing.values():
            task.cancel()
        self._typing.clear()
        if self._outbox_task:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._outbox_task, timeout=5)
        await self._disconnect()

    async def _disconnect(self) -> None:
        """Stop streaming, close the platform's clients and wait for the receive loop. An
        error here is logged, never raised: it must not hide the error that brought us
        here (a failed start) nor end a shutdown half way."""
        streaming, self._streaming = self._streaming, None
        if streaming is not None:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # bounded: a lost
                await asyncio.wait_for(streaming, timeout=5)  # cancellation is sent again
        try:
            await self.disconnect()
        except Exception:
            log.exception("%s: error while disconnecting", self.platform)
        receiver, self._receiver = self._receiver, None
        if receiver is not None and receiver is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(receiver, timeout=5)
        for logger in self._filtered:
            logger.removeFilter(self.redact)
        self._filtered = []

    def _sdk_loggers(self) -> list[logging.Logger]:
        """The loggers in ``sdk_loggers`` and all their children, as imported so far (a
        filter does not see the records a child logger passes up)."""
        names = [*self.sdk_loggers, *logging.root.manager.loggerDict]
        prefixes = tuple(f"{name}." for name in self.sdk_loggers)
        chosen = {name for name in names if name in self.sdk_loggers or name.startswith(prefixes)}
        return [logging.getLogger(name) for name in sorted(chosen)]

    @property
    def running(self) -> bool:
        return self._outbox_task is not None and not self._outbox_task.done() and self.error is None

    async def __aenter__(self) -> Adapter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


ConfigT = TypeVar("ConfigT")


class PlatformAdapter(Adapter, Generic[ConfigT]):
    """An adapter for a chat platform: the base plus its frozen, validated config (each
    config checks itself in ``__post_init__`` and keeps its secrets out of its repr)."""

    def __init__(
        self,
        bus: Bus,
        config: ConfigT,
        *,
        bot_id: str,
        personas: PersonaStore | None = None,
        backoff: Backoff = DEFAULT_DELIVERY_BACKOFF,
    ) -> None:
        super().__init__(bus, bot_id=bot_id, personas=personas, backoff=backoff)
        self.config = config
        hidden = [f.name for f in fields(config) if not f.repr] if is_dataclass(config) else []
        self.redact = RedactSecrets(*(getattr(config, name) for name in hidden))  # secrets: repr=False
