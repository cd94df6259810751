"""Progress of a split reply lives in Redis: a process that dies after part 1 and the
process that takes its entry over send each part once between them."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import redis.asyncio as aioredis

from adapters.base import Adapter
from core.bus import DELIVERY_GROUP, Bus
from core.errors import DeliveryError
from core.keys import Keys
from core.messages import Reply, Route
from core.retry import Backoff
from tests.helpers import wait_for

FAST = Backoff(first=0.01, cap=0.05, jitter=0.0)
PARTS = ["alpha " * 3, "bravo " * 3, "charlie " * 3, "delta " * 3]


class RecordingAdapter(Adapter):
    """A platform that records what it accepted; ``crash_at`` hangs that part forever
    (the process is killed while the call is in flight)."""

    platform: ClassVar[str] = "loop"
    max_message_chars: ClassVar[int] = 30

    def __init__(
        self, bus: Bus, accepted: list[tuple[str, int]], *, consumer: str, crash_at: int = -1
    ) -> None:
        super().__init__(bus, bot_id="support", consumer=consumer, backoff=FAST)
        self.accepted = accepted
        self.crash_at = crash_at

    async def connect(self) -> None:
        return None

    async def disconnect(self) -> None:
        return None

    async def send_text(self, reply: Reply, text: str, part: int) -> None:
        if part == self.crash_at:
            await asyncio.Event().wait()  # never returns: the process dies here
        self.accepted.append((text.strip(), part))


def long_reply() -> Reply:
    return Reply("support", "loop", "chat-1", "u1", "\n\n".join(p.strip() for p in PARTS), Route.GENERATE)


async def test_a_second_process_resumes_a_half_sent_reply(redis: aioredis.Redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    accepted: list[tuple[str, int]] = []
    reply = long_reply()
    await bus.publish_reply(reply)
    first = RecordingAdapter(bus, accepted, consumer="loop-a", crash_at=2)
    await first.start()

    async def two_parts_stored() -> bool:  # written right after each accepted part
        return await bus.parts_sent(reply) == 2

    await wait_for(two_parts_stored, what="parts 0 and 1 accepted and stored")
    assert len(accepted) == 2
    await first.stop()  # killed mid-part: its entry stays pending, its memory is gone

    stream = keys.outbound("loop", "support")
    claimed = await bus.claim_stale(stream, DELIVERY_GROUP, "loop-b", min_idle_ms=0)
    assert [entry for entry, _ in claimed]  # the upkeep of the second process takes it over
    second = RecordingAdapter(Bus(redis, keys), accepted, consumer="loop-b")
    await second.start()
    await wait_for(lambda: second.outbox.delivered == 1, what="the rest delivered")
    await second.stop()
    assert [part for _, part in accepted] == [0, 1, 2, 3]  # each part once, in order
    assert [text for text, _ in accepted] == [p.strip() for p in PARTS]
    assert (
        await redis.exists(keys.parts_sent(reply.platform, reply.bot_id, reply.reply_id)) == 0
    )  # dropped with the XACK
    assert await bus.pending_count(stream, DELIVERY_GROUP) == 0


async def test_a_failed_part_is_retried_without_resending_earlier_parts(
    redis: aioredis.Redis, keys: Keys
) -> None:
    bus = Bus(redis, keys)
    accepted: list[tuple[str, int]] = []
    failures = [2]

    class Flaky(RecordingAdapter):
        async def send_text(self, reply: Reply, text: str, part: int) -> None:
            if part in failures:
                failures.remove(part)
                raise DeliveryError("platform hiccup")
            await super().send_text(reply, text, part)

    adapter = Flaky(bus, accepted, consumer="loop-a")
    await bus.publish_reply(long_reply())
    async with adapter:
        await wait_for(lambda: adapter.outbox.delivered == 1, what="the reply delivered")
    assert [part for _, part in accepted] == [0, 1, 2, 3]
    assert adapter.outbox.retries == 1
