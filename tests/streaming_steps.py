"""The engine's side of streaming, for adapter tests: take the customer's message off the
real intake stream, publish its partials (``core.partials``) and then its final reply on
the real outbound stream, as the engine does. And a clock a test moves by hand, so
throttling is checked by counting, never by waiting."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.base import Adapter
from core.bus import Bus
from core.messages import IncomingMessage, QuickReply, Reply, Route
from core.partials import Partial, Partials
from tests.helpers import wait_for


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def next_message(bus: Bus) -> IncomingMessage:
    """The next customer's message the adapter queued (taken off the intake stream)."""
    found: list[IncomingMessage] = []

    async def arrived() -> bool:
        entries = await bus.read_intake("test-engine", count=1, block_ms=50)
        if entries:
            await bus.ack_intake([entry_id for entry_id, _ in entries])
            found.extend(message for _, message in entries)
        return bool(found)

    await wait_for(arrived, what="the customer's message on the intake stream")
    return found[0]


class Writer:
    """Writes one reply the way the engine does: partials, then the final reply."""

    def __init__(self, bus: Bus, message: IncomingMessage) -> None:
        self.bus, self.message = bus, message
        self.partials = Partials(bus.redis, bus.keys)
        self.seq = 0

    async def partial(self, text: str) -> None:
        await self.partials.publish(Partial.of(self.message, text, self.seq))
        self.seq += 1

    async def final(self, text: str, quick_replies: tuple[QuickReply, ...] = ()) -> Reply:
        reply = Reply.to(
            self.message,
            text,
            Route.GENERATE,
            intent="track_order",
            confidence=0.9,
            quick_replies=quick_replies,
        )
        await self.bus.publish_reply(reply)
        return reply


async def partials_handled(adapter: Adapter, count: int) -> None:
    """Wait until ``adapter`` has read ``count`` partials in all and handled them."""
    streamer = adapter.streamer
    assert streamer is not None

    def handled() -> bool:
        return streamer.stats["partials"] >= count and streamer.idle

    await wait_for(handled, what=f"{count} partials handled")


async def delivered(adapter: Adapter, count: int = 1) -> None:
    await wait_for(lambda: adapter.outbox.delivered >= count, what=f"{count} replies delivered")
