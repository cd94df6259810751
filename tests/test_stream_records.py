"""The Redis record behind edit-in-place streaming: one streamer per reply, the final
takes over once, and no partial is edited in after it (real Redis, two "processes")."""

from __future__ import annotations

import redis.asyncio as aioredis

from adapters.stream_records import CLAIM_SECONDS, FINAL_MARK_SECONDS, StreamRecords
from core.keys import Keys


def records(redis: aioredis.Redis, keys: Keys) -> StreamRecords:
    return StreamRecords(redis, keys, "telegram", "support")


async def test_one_process_streams_a_reply_and_the_final_takes_it_over(
    redis: aioredis.Redis, keys: Keys
) -> None:
    first, second = records(redis, keys), records(redis, keys)
    assert await first.claim("m1", "proc-a")
    assert not await second.claim("m1", "proc-b")  # the other process leaves it alone
    assert await second.take_over("m1") == ("pending", "")  # the first message is on its way
    assert not await second.record("m1", "proc-b", "77")  # only the claimer records
    assert await first.record("m1", "proc-a", "77")
    assert await first.begin_edit("m1")
    assert not await first.begin_edit("m1")  # one edit at a time
    assert await second.editing("m1")
    await first.end_edit("m1")
    assert await second.take_over("m1") == ("message", "77")
    assert not await first.begin_edit("m1")  # the final took over: no more partial edits
    assert await second.take_over("m1") == ("message", "77")  # a retried final edits again
    assert await redis.ttl(keys.streamed("telegram", "support", "m1")) > CLAIM_SECONDS  # for a late final


async def test_a_final_that_comes_first_keeps_later_partials_out(redis: aioredis.Redis, keys: Keys) -> None:
    store = records(redis, keys)
    assert await store.take_over("m2") == ("none", "")  # nothing streamed: send it normally
    assert not await store.claim("m2", "proc-a")  # a partial read late starts nothing
    assert 0 < await redis.ttl(keys.streamed("telegram", "support", "m2")) <= FINAL_MARK_SECONDS


async def test_a_claim_whose_first_message_failed_is_released(redis: aioredis.Redis, keys: Keys) -> None:
    store = records(redis, keys)
    assert await store.claim("m3", "proc-a")
    await store.release("m3", "proc-b")  # not the claimer: nothing happens
    assert await store.take_over("m3") == ("pending", "")
    await store.release("m3", "proc-a")
    assert await store.claim("m3", "proc-b")  # a later partial may try again
