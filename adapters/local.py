"""Adapters whose customer waits on the line for the answer: the console and the web
chat. A caller ``ask``s and gets the :class:`Reply` back, but the message still goes
through the intake stream, the engine and the outbound stream like any platform's.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from adapters.base import Adapter
from core.messages import IncomingMessage, Reply


class LocalAdapter(Adapter):
    max_message_chars: ClassVar[int] = 1_000_000  # no platform limit: never split

    def __init__(self, *args: object, reply_timeout: float = 120.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reply_timeout = reply_timeout
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self.unclaimed: dict[str, list[Reply]] = {}  # replies nobody waited for, by user

    async def connect(self) -> None:
        """Nothing to log in to."""

    async def disconnect(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def ask(self, message: IncomingMessage) -> Reply:
        """Submit ``message`` and wait for its reply (TimeoutError after reply_timeout)."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[message.message_id] = future
        try:
            await self.submit(message, message.message_id)
            return await asyncio.wait_for(future, self.reply_timeout)
        finally:
            self._waiting.pop(message.message_id, None)

    async def _deliver_reply(self, reply: Reply) -> None:
        """Hand the whole reply to whoever waits for it: never split, and an empty reply
        (the engine's receipt on a conversation the support team holds) is handed over
        too, so the caller stops waiting."""
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
