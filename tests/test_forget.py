"""`history forget` leaves nothing about the user anywhere: not in history or tickets,
and not in the intake or any outbound stream (read, pending or unread)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from core.bus import DELIVERY_GROUP, ENGINE_GROUP, Bus
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey, IncomingMessage, Reply, Route
from tests.test_cli import cli, env  # noqa: F401  # env: the CLI's settings fixture, used by name


def message(user: str, text: str, platform: str = "telegram") -> IncomingMessage:
    return IncomingMessage("support", platform, f"chat-{user}", user, text)


async def every_stream_entry(redis: aioredis.Redis, keys: Keys) -> str:
    """All stream contents under the namespace, as one text."""
    texts = []
    async for stream in redis.scan_iter(match=keys.streams(), _type="stream"):
        texts += [str(fields) for _id, fields in await redis.xrange(stream)]
    return "\n".join(texts)


async def test_forget_erases_the_users_stream_entries_and_only_theirs(
    redis: aioredis.Redis, keys: Keys
) -> None:
    bus = Bus(redis, keys)
    for i in range(3):
        assert await bus.submit(message("alice", f"alice secret {i}"))
        await bus.publish_reply(Reply.to(message("alice", "q"), f"answer to alice {i}", Route.GENERATE))
    await bus.submit(message("bob", "bob keeps this"))
    await bus.submit(message("alice", "same id, other platform", platform="web"))
    await bus.publish_reply(Reply.to(message("bob", "q"), "answer to bob", Route.GENERATE))
    await bus.read_intake("worker-1", count=2, block_ms=10)  # two of alice's messages pending
    await bus.read_outbound("telegram", "support", "telegram-1", count=1, block_ms=10)  # one reply pending

    assert await bus.forget_user("telegram", "alice") == 6
    left = await every_stream_entry(redis, keys)
    assert "alice secret" not in left and "answer to alice" not in left
    assert "bob keeps this" in left and "answer to bob" in left and "same id, other platform" in left
    assert await bus.pending_count(keys.intake(), ENGINE_GROUP) == 0  # no pending id points at a gone entry
    assert await bus.pending_count(keys.outbound("telegram", "support"), DELIVERY_GROUP) == 0
    remaining = [m.text for _, m in await bus.read_intake("worker-1", count=10, block_ms=10)]
    assert remaining == ["bob keeps this", "same id, other platform"]
    assert await bus.forget_user("telegram", "alice") == 0


async def test_forget_pages_through_a_long_stream(redis: aioredis.Redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    for i in range(1200):  # more than two pages of FORGET_PAGE
        await bus.submit(message("alice" if i % 3 == 0 else "bob", f"message {i}"))
    assert await bus.forget_user("telegram", "alice") == 400
    assert await redis.xlen(keys.intake()) == 800


@pytest.mark.usefixtures("env")
async def test_history_forget_command_erases_history_and_streams(redis: aioredis.Redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    conv = ConversationKey("support", "telegram", "chat-alice", "alice")
    await History(redis, keys).append_turns(conv, [Turn("user", "my parcel?"), Turn("bot", "on its way")])
    await bus.submit(message("alice", "my address is 1 Main St"))
    await bus.publish_reply(Reply.to(message("alice", "q"), "we ship to 1 Main St", Route.GENERATE))
    code, out = await asyncio.to_thread(
        cli, "history", "forget", "--user", "alice", "--platform", "telegram", "--yes"
    )
    assert code == 0 and "1 keys deleted, 2 stream entries deleted" in " ".join(out.split())
    assert await redis.exists(keys.history(conv)) == 0
    assert "Main St" not in await every_stream_entry(redis, keys)
    leftovers = [k async for k in redis.scan_iter(match=f"{keys.namespace}:*") if "alice" in k]
    assert leftovers == []


async def test_a_running_engine_drops_a_forgotten_users_cached_prompts(
    redis: aioredis.Redis, keys: Keys
) -> None:
    """`history forget` runs in another process: the engine hears it and tells its models."""
    from tests.helpers import wait_for
    from tests.scripted_models import ScriptedProvider, build_engine

    @dataclass
    class Remembering(ScriptedProvider):
        forgotten: list[tuple[str, str]] = field(default_factory=list)

        def forget(self, platform: str, user_id: str) -> int:  # as ModelRegistry.forget
            self.forgotten.append((platform, user_id))
            return 1

    provider = Remembering()
    engine = build_engine(redis, keys, provider)
    async with engine:
        channel = keys.forget_channel()
        await wait_for(
            lambda: _subscribed(redis, channel), timeout=10, what="the engine subscribed to forgets"
        )
        await Bus(redis, keys).forget_user("telegram", "alice")  # the CLI's process
        await wait_for(lambda: provider.forgotten, timeout=10, what="the engine passed it on")
    assert provider.forgotten == [("telegram", "alice")]
    assert not await _subscribed(redis, channel)  # stopping the engine unsubscribes


async def _subscribed(redis: aioredis.Redis, channel: str) -> bool:
    return bool((await redis.pubsub_numsub(channel))[0][1])
