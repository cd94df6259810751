"""Adapters whose customer waits on the line for the answer: the console and the web
chat. A caller ``ask``s and gets the :class:`Reply` back, but the message still goes
through the intake stream, the engine and the outbound stream like any platform's.

Several web processes may read one outbound stream: each message carries the id of
the process whose request waits for it (``meta["reply_to"]``), and a process that reads
a reply meant for another forwards it there (``Bus.forward_reply``, Redis pub/sub).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from typing import ClassVar

from adapters.base import Adapter
from core.messages import IncomingMessage, Reply

REPLY_TO = "reply_to"


class LocalAdapter(Adapter):
    max_message_chars: ClassVar[int] = 1_000_000  # no platform limit: never split

    def __init__(self, *args: object, reply_timeout: float = 120.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reply_timeout = reply_timeout
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self.unclaimed: dict[str, list[Reply]] = {}  # replies nobody waited for, by user
        self.instance = uuid.uuid4().hex[:16]  # this process's adapter, for forwarded replies
        self._forwarded: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Nothing to log in to; listen for replies other processes forward here."""
        self._forwarded = asyncio.create_task(
            self.bus.receive_forwarded(self.instance, self._hand_over), name=f"{self.platform}-forwarded"
        )

    async def disconnect(self) -> None:
        if self._forwarded is not None:
            self._forwarded.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # bounded: a lost
                await asyncio.wait_for(self._forwarded, timeout=5)  # cancellation is sent again
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def ask(self, message: IncomingMessage) -> Reply:
        """Submit ``message`` and wait for its reply (TimeoutError after reply_timeout)."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        message = dataclasses.replace(message, meta={**message.meta, REPLY_TO: self.instance})
        self._waiting[message.message_id] = future
        try:
            await self.submit(message, message.message_id)
            return await asyncio.wait_for(future, self.reply_timeout)
        finally:
            self._waiting.pop(message.message_id, None)

    async def answer_now(self, reply: Reply) -> None:
        """The caller waits in this process: hand the reply over without a round trip."""
        await self._hand_over(reply)

    async def _deliver_reply(self, reply: Reply) -> None:
        """Hand the whole reply to whoever waits for it: never split, and an empty reply
        (the engine's receipt on a conversation the support team holds) is handed over
        too, so the caller stops waiting. A reply another process waits for goes there."""
        owner = reply.meta.get(REPLY_TO, self.instance)
        if owner != self.instance and await self.bus.forward_reply(owner, reply):
            return
        await self._hand_over(reply)

    async def _hand_over(self, reply: Reply) -> None:
        future = self._waiting.get(reply.in_reply_to)
        if future is not None and not future.done():
            future.set_result(reply)
        elif reply.text:  # nobody waits (an agent's answer, a reminder, a caller that gave up)
            await self.on_unsolicited(reply)

    async def send_text(self, reply: Reply, text: str, part: int) -> None:
        await self._deliver_reply(reply)

    async def on_unsolicited(self, reply: Reply) -> None:
        """A reply nobody is waiting for: kept for the next poll."""
        self.unclaimed.setdefault(reply.user_id, []).append(reply)

    def take_unclaimed(self, user_id: str) -> list[Reply]:
        return self.unclaimed.pop(user_id, [])
