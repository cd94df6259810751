"""Partial replies: published in order, followed from "now", erased with the user."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from core.bus import Bus
from core.keys import Keys
from core.messages import IncomingMessage
from core.partials import Partial, Partials
from tests.helpers import wait_for


def _message(user: str = "u1") -> IncomingMessage:
    return IncomingMessage("shop", "web", chat_id=user, user_id=user, text="hi", meta={"page": "p1"})


async def test_a_follower_sees_what_is_published_after_it_started_in_order(
    redis: aioredis.Redis, keys: Keys
) -> None:
    partials = Partials(redis, keys)
    message = _message()
    await partials.publish(Partial.of(message, "too early", 0))  # before "now": not seen
    now = await partials.position("web", "shop")
    seen: list[Partial] = []

    async def follow() -> None:
        async for partial in partials.follow("web", "shop", after=now, block_ms=50):
            seen.append(partial)

    task = asyncio.create_task(follow())
    for seq, text in enumerate(["Hello", "Hello, how", "Hello, how can I help?"]):
        await partials.publish(Partial.of(message, text, seq))
    await partials.publish(Partial("other", "web", "u2", "u2", "m2", "another bot's text", 0))
    await wait_for(lambda: len(seen) >= 3, what="three partials")
    task.cancel()
    assert [p.text for p in seen] == ["Hello", "Hello, how", "Hello, how can I help?"]
    assert [p.seq for p in seen] == [0, 1, 2]
    assert {p.in_reply_to for p in seen} == {message.message_id}
    assert seen[0].meta == {"page": "p1"} and seen[0].conversation == message.conversation


async def test_the_stream_is_capped(redis: aioredis.Redis, keys: Keys) -> None:
    partials = Partials(redis, keys, max_entries=10)
    for seq in range(500):
        await partials.publish(Partial.of(_message(), f"text {seq}", seq))
    length = await redis.xlen(keys.partials("web", "shop"))
    assert 10 <= length < 500  # approximate trimming: whole macro nodes go


async def test_forgetting_a_user_erases_their_partials(redis: aioredis.Redis, keys: Keys) -> None:
    partials = Partials(redis, keys)
    await partials.publish(Partial.of(_message("u1"), "for u1", 0))
    await partials.publish(Partial.of(_message("u2"), "for u2", 0))
    await Bus(redis, keys).forget_user("web", "u1")
    left = await redis.xrange(keys.partials("web", "shop"))
    assert [Partial.from_json(fields["data"]).user_id for _id, fields in left] == ["u2"]
