"""Replies shown as they are written: following partials, and edit-in-place streaming.

The engine publishes a reply's text so far (``core.partials``). The web chat pushes it to
the customer's open pages (``follow_partials``). On Telegram, Discord and Slack, when the
persona says ``stream: edit``, :class:`EditStreamer` sends the first partial of a reply
as a message and edits it with later ones, throttled per chat to the platform's limits
(``adapters.throttle``); the final reply, delivered by the outbox like any other, then
edits that message to its final text instead of sending a new one
(:meth:`EditStreamer.finish`). Every process running the adapter follows the partials and
any may deliver the final: ``adapters.stream_records`` keeps that exactly-once.

Partials are best effort: a throttled one is skipped (a later one, or the final, shows
more), a failed edit is dropped, and a final without a streamed message is sent the
normal way, as it is when the persona does not stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from adapters.push import PushChannels
from adapters.stream_records import EDIT_LOCK_MS, StreamRecords
from adapters.throttle import Limit, Throttle
from core.bus import Bus
from core.errors import DeliveryError, PermanentDeliveryError, RateLimited
from core.messages import Reply, Route
from core.partials import Partial, Partials
from core.retry import Backoff, retrying
from core.text import split_message

if TYPE_CHECKING:  # the adapter lends its platform calls; base imports this module
    from adapters.base import Adapter

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisError, OSError)
PENDING_WAIT_S = 5.0  # the final waits this long for a first message being sent, then retries
MAX_REPLIES = 10_000  # replies whose streaming state one process remembers
PERSONA_CACHE_S = 5.0


async def follow_partials(
    bus: Bus, platform: str, bot_id: str, on_partial: Callable[[Partial], None]
) -> None:
    """Call ``on_partial`` for each partial of one bot on one platform, until cancelled.
    A Redis outage is waited out; partials published meanwhile are lost (the finals are not)."""
    partials = Partials(bus.redis, bus.keys)
    policy = retrying(f"{platform} partials of {bot_id}", retry_on=REDIS_DOWN, backoff=Backoff(0.5, 5.0))
    async for attempt in policy:
        with attempt:
            async for partial in partials.follow(platform, bot_id, block_ms=1_000):
                on_partial(partial)


class PagePartials:
    """The web chat's side: each partial to its customer's pages open in this process.
    Every web process follows the partials of the bots its pages talk to, so a page gets
    them whichever process holds its request."""

    def __init__(self, bus: Bus, platform: str, pages: PushChannels) -> None:
        self.bus, self.platform, self.pages = bus, platform, pages
        self._following: dict[str, asyncio.Task[None]] = {}

    def follow(self, bot_id: str) -> None:
        """Push ``bot_id``'s partials from now on (once per bot; bot ids come checked)."""
        if bot_id not in self._following:
            task = asyncio.create_task(follow_partials(self.bus, self.platform, bot_id, self._push))
            self._following[bot_id] = task

    def _push(self, partial: Partial) -> None:
        if self.pages.listening(partial.user_id):
            event = {
                "in_reply_to": partial.in_reply_to,
                "ref": partial.meta.get("ref", ""),
                "seq": partial.seq,
                "text": partial.text,
            }
            self.pages.publish(partial.user_id, event, kind="partial")

    async def close(self) -> None:
        tasks, self._following = list(self._following.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(slots=True)
class _Streamed:
    message_id: str = ""  # "" until the first message is sent
    seq: int = -1
    shown: str = ""
    done: bool = False  # another process streams it, or the final took over


class EditStreamer:
    """Edit-in-place streaming for one adapter (one bot on one platform)."""

    def __init__(self, adapter: Adapter, limits: tuple[Limit, ...]) -> None:
        self.adapter = adapter
        bus = adapter.bus
        self.records = StreamRecords(bus.redis, bus.keys, adapter.platform, adapter.bot_id)
        self.throttle = Throttle(limits)
        self.owner = uuid.uuid4().hex[:16]  # this process, in the records
        self.stats: Counter[str] = Counter()  # partials, sent, edits, throttled, finals_edited...
        self._replies: OrderedDict[str, _Streamed] = OrderedDict()
        self._latest: dict[str, Partial] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._persona: tuple[float, bool] = (-PERSONA_CACHE_S, False)

    async def run(self) -> None:
        """Follow the bot's partials until cancelled."""
        try:
            await follow_partials(self.adapter.bus, self.adapter.platform, self.adapter.bot_id, self._take)
        finally:
            for task in self._workers.values():
                task.cancel()
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
            self._workers.clear()

    @property
    def idle(self) -> bool:
        """No partial waiting or being handled."""
        return not self._latest and not self._workers

    def _take(self, partial: Partial) -> None:
        """Keep only the newest partial of each reply; one worker per reply shows it."""
        self.stats["partials"] += 1
        state = self._replies.get(partial.in_reply_to)
        if state is not None and (state.done or partial.seq <= state.seq):
            return
        self._latest[partial.in_reply_to] = partial
        if partial.in_reply_to not in self._workers:
            task = asyncio.create_task(self._work(partial.in_reply_to))
            self._workers[partial.in_reply_to] = task

    async def _work(self, in_reply_to: str) -> None:
        try:
            while (partial := self._latest.pop(in_reply_to, None)) is not None:
                try:
                    await self._show(partial)
                except Exception as exc:  # best effort: the final is in the outbound stream
                    why = f"{type(exc).__name__}: {exc}"
                    log.warning("%s: partial not shown: %s", self.adapter.platform, why)
        finally:
            self._workers.pop(in_reply_to, None)

    async def _streams_by_edit(self) -> bool:
        """The persona's ``stream`` setting (cached a few seconds, so a change applies live)."""
        at, enabled = self._persona
        if self.adapter.personas is not None and time.monotonic() - at > PERSONA_CACHE_S:
            with contextlib.suppress(Exception):
                enabled = (await self.adapter.personas.get(self.adapter.bot_id)).stream == "edit"
            self._persona = (time.monotonic(), enabled)
        return enabled

    async def _show(self, partial: Partial) -> None:
        chunks = split_message(partial.text, self.adapter.max_message_chars)
        state = self._replies.get(partial.in_reply_to)
        if not chunks or (state is not None and (state.done or partial.seq <= state.seq)):
            return
        if state is None:
            if not await self._streams_by_edit():
                self.stats["off"] += 1
                return
            await self._start(partial, chunks[0])
        elif state.shown != chunks[0]:
            await self._edit(partial, state, chunks[0])

    async def _start(self, partial: Partial, text: str) -> None:
        """The first message of a streamed reply, sent by the one process that claims it."""
        if not self.throttle.ready(partial.chat_id):
            self.stats["throttled"] += 1
            return
        key = partial.in_reply_to
        if not await self.records.claim(key, self.owner):
            self._remember(key, _Streamed(seq=partial.seq, done=True))
            return
        self.throttle.count(partial.chat_id)
        try:
            message_id = await self.adapter.send_text(_as_reply(partial), text, 0)
        except DeliveryError as exc:
            await self.records.release(key, self.owner)
            self._failed(partial.chat_id, exc, "first message")
            return
        if not message_id or not await self.records.record(key, self.owner, message_id):
            self._remember(key, _Streamed(seq=partial.seq, done=True))
            return
        self.stats["sent"] += 1
        self._remember(key, _Streamed(message_id, partial.seq, text))

    async def _edit(self, partial: Partial, state: _Streamed, text: str) -> None:
        if not self.throttle.allow(partial.chat_id):
            self.stats["throttled"] += 1
            return
        if not await self.records.begin_edit(partial.in_reply_to):
            state.done = True  # the final took over
            return
        try:
            await self.adapter.edit_text(_as_reply(partial), state.message_id, text)
        except DeliveryError as exc:
            self._failed(partial.chat_id, exc, "edit")
        else:
            self.stats["edits"] += 1
            state.seq, state.shown = partial.seq, text
        finally:
            await self.records.end_edit(partial.in_reply_to)

    def _failed(self, chat_id: str, exc: DeliveryError, what: str) -> None:
        if isinstance(exc, RateLimited):
            self.throttle.pause(chat_id, exc.retry_after)
            self.stats["rate_limited"] += 1
        else:
            self.stats["failed"] += 1
        log.info("%s: streamed %s to chat %s not made: %s", self.adapter.platform, what, chat_id, exc)

    def _remember(self, in_reply_to: str, state: _Streamed) -> None:
        self._replies[in_reply_to] = state
        self._replies.move_to_end(in_reply_to)
        while len(self._replies) > MAX_REPLIES:
            self._replies.popitem(last=False)

    async def finish(self, reply: Reply, first_part: str) -> bool:
        """For the final reply: edit its streamed message to ``first_part`` (the first part
        of the normal delivery). False when there is none and part 0 must be sent normally.
        Raises DeliveryError while the first message is still being sent (the outbox retries)."""
        key = reply.in_reply_to
        if not key:
            return False
        self._remember(key, _Streamed(done=True))  # this process stops editing it too
        state, message_id = await self.records.take_over(key)
        deadline = time.monotonic() + PENDING_WAIT_S
        while state == "pending" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            state, message_id = await self.records.take_over(key)
        if state == "pending":
            raise DeliveryError(f"the streamed message for {key} is still being sent; retrying")
        if state != "message":
            return False
        edit_ends = time.monotonic() + EDIT_LOCK_MS / 1000
        while await self.records.editing(key) and time.monotonic() < edit_ends:
            await asyncio.sleep(0.02)  # a partial's edit in flight lands first, then ours
        try:
            await self.adapter.edit_text(reply, message_id, first_part)
        except PermanentDeliveryError as exc:  # the message was deleted meanwhile: send anew
            log.info("%s: streamed message %s gone (%s); sending anew", reply.platform, message_id, exc)
            return False
        self.stats["finals_edited"] += 1
        return True


def _as_reply(partial: Partial) -> Reply:
    """A partial as the reply it will become: same chat, thread and options (``meta``)."""
    return Reply(
        partial.bot_id,
        partial.platform,
        partial.chat_id,
        partial.user_id,
        partial.text,
        Route.GENERATE,
        in_reply_to=partial.in_reply_to,
        meta=dict(partial.meta),
        reply_id=f"stream-{partial.in_reply_to}",
    )
