"""A stand-in for the engine in adapter tests: it reads the real intake stream and
publishes replies on the real outbound stream, so adapters are tested through Redis
exactly as in production, without loading models.

The reply is ``echo: <text>``; a message containing ``LONG`` gets a long multi-paragraph
reply (for splitting tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from core.bus import Bus
from core.messages import IncomingMessage, Reply, Route

LONG_PARAGRAPH = (
    "Thanks for reaching out about your order. Here is everything you need to know, step by "
    "step, so nothing gets lost along the way. "
)


def reply_text(message: IncomingMessage, long_chars: int = 5000) -> str:
    if "LONG" in message.text:
        paragraphs = []
        while sum(len(p) + 2 for p in paragraphs) < long_chars:
            paragraphs.append(f"Part {len(paragraphs) + 1}. " + LONG_PARAGRAPH * 3)
        return "\n\n".join(paragraphs)
    return f"echo: {message.text}"


class FakeEngine:
    def __init__(self, bus: Bus, long_chars: int = 5000) -> None:
        self.bus = bus
        self.long_chars = long_chars
        self.seen: list[IncomingMessage] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for entry_id, message in await self.bus.read_intake("fake-engine", block_ms=200):
                self.seen.append(message)
                reply = Reply.to(
                    message,
                    reply_text(message, self.long_chars),
                    Route.GENERATE,
                    intent="echo",
                    confidence=1.0,
                )
                await self.bus.publish_reply(reply)
                await self.bus.ack_intake([entry_id])


@contextlib.asynccontextmanager
async def running_fake_engine(bus: Bus, long_chars: int = 5000) -> AsyncIterator[FakeEngine]:
    engine = FakeEngine(bus, long_chars)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        yield engine
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
