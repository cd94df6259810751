"""Redis faults: a restart that comes back empty, a dead consumer's pending entries, and
stream bounds that never drop unread or pending work.

The restart tests run their own redis-server on a free port (never the shared one),
stop it, wipe its data and start it again empty.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bots.personas import default_personas
from core.bus import DELIVERY_GROUP, ENGINE_GROUP, Bus
from core.connection import RedisOptions, connect
from core.delivery import Outbox
from core.engine import EngineConfig
from core.keys import Keys
from core.messages import IncomingMessage, Reply
from core.persona import PersonaStore
from core.retry import Backoff
from core.upkeep import StreamUpkeep, UpkeepConfig
from tests.emulators.redis_server import PrivateRedis
from tests.helpers import wait_for
from tests.scripted_models import build_engine

QUICK = Backoff(first=0.05, cap=0.2)
FAST = UpkeepConfig(interval_s=0.05, claim_idle_ms=60_000, backoff=Backoff(first=0.05, cap=0.2))


def message(text: str, user: str = "ann") -> IncomingMessage:
    return IncomingMessage("support", "web", user, user, text)


@pytest.fixture
async def private(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    (tmp_path / "redis").mkdir()
    server = await PrivateRedis(tmp_path / "redis").start()
    try:
        yield server
    finally:
        await server.stop()


async def restart_empty(server: PrivateRedis) -> None:
    """Stop the server, delete its data and start it again: a Redis that lost everything."""
    await server.stop()
    shutil.rmtree(server.data_dir)
    server.data_dir.mkdir()
    await server.start()


async def test_a_redis_that_comes_back_empty_gets_its_consumer_groups_again(private: PrivateRedis) -> None:
    client = await connect(private.url, Path("var"))  # a dropped connection is retried once
    try:
        bus = Bus(client, Keys("fault"))
        await bus.submit(message("before"))
        assert [m.text for _, m in await bus.read_intake("w1", block_ms=10)] == ["before"]
        await restart_empty(private)
        await bus.submit(message("after"))
        # the cached group is gone with the data: NOGROUP, then the group is created again
        assert [m.text for _, m in await bus.read_intake("w1", block_ms=10)] == ["after"]
        assert await bus.pending_count(bus.keys.intake(), ENGINE_GROUP) == 1
    finally:
        await client.aclose()


async def test_engine_and_outbox_answer_again_after_redis_restarts_empty(private: PrivateRedis) -> None:
    keys = Keys("fault")
    client = await connect(private.url, Path("var"), RedisOptions(retries=0, socket_timeout_s=2))
    personas = PersonaStore(client, keys)

    async def seed() -> None:
        for persona in default_personas(None):
            await personas.put_if_absent(persona)

    await seed()
    bus = Bus(client, keys)
    delivered: list[Reply] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply)

    engine = build_engine(
        client, keys, config=EngineConfig(block_ms=50, backoff=Backoff(first=0.05, cap=0.2))
    )
    outbox = Outbox(bus, "web", "support", deliver, consumer="web-x", backoff=QUICK)
    upkeep = StreamUpkeep(bus, keys.intake(), ENGINE_GROUP, engine.config.consumer, FAST, also=seed)
    stop = asyncio.Event()
    outbox_task = asyncio.create_task(outbox.run(stop))
    try:
        async with engine, upkeep:
            await bus.submit(message("where is my order? [track_order:0.9]"))
            await wait_for(lambda: len(delivered) == 1, timeout=20, what="the first reply")

            await restart_empty(private)
            await wait_for(
                lambda: _exists(client, keys.persona("support")), timeout=20, what="persona re-seeded"
            )
            await bus.submit(message("and now? [track_order:0.9]"))
            await wait_for(lambda: len(delivered) == 2, timeout=20, what="a reply after the restart")
        assert delivered[1].text.startswith("answer to and now?")
        phone = default_personas(None)[0].facts["Customer Support Phone Number"]
        assert phone in delivered[1].text  # the re-seeded persona's facts fill the reply
        assert engine.running is False and not outbox_task.done()  # the outbox loop survived
    finally:
        stop.set()
        await asyncio.wait_for(outbox_task, 10)
        await client.aclose()


async def _exists(client: aioredis.Redis, key: str) -> bool:
    try:
        return bool(await client.exists(key))
    except RedisError:  # this probe's connection was dropped by the restart
        return False


async def test_a_dead_workers_pending_entries_are_answered_by_a_live_one(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    await bus.submit(message("orphaned [track_order:0.9]"))
    [(entry_id, _)] = await bus.read_intake("worker-dead", block_ms=10)  # read, then the process died
    # two minutes pass (the entry's idle time is set, instead of sleeping)
    await redis.xclaim(keys.intake(), ENGINE_GROUP, "worker-dead", 0, [entry_id], idle=120_000, justid=True)
    engine = build_engine(redis, keys)
    config = UpkeepConfig(interval_s=0.05, claim_idle_ms=60_000)
    upkeep = StreamUpkeep(engine.bus, keys.intake(), ENGINE_GROUP, engine.config.consumer, config)
    async with engine, upkeep:
        await wait_for(lambda: _outbound_len(redis, keys), timeout=20, what="the orphan answered")
    assert upkeep.tally.claimed == 1
    assert await bus.pending_count(keys.intake(), ENGINE_GROUP) == 0


async def _outbound_len(redis: aioredis.Redis, keys: Keys) -> bool:
    return int(await redis.xlen(keys.outbound("web", "support"))) == 1


async def test_hand_back_lets_another_consumer_claim_at_once(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    await bus.submit(message("one"))
    await bus.submit(message("two"))
    await bus.read_intake("stopping", block_ms=10)
    assert await bus.claim_stale(keys.intake(), ENGINE_GROUP, "other", min_idle_ms=60_000) == []
    assert await bus.hand_back(keys.intake(), ENGINE_GROUP, "stopping", idle_ms=60_000) == 2
    claimed = await bus.claim_stale(keys.intake(), ENGINE_GROUP, "other", min_idle_ms=60_000)
    assert [IncomingMessage.from_json(raw).text for _, raw in claimed] == ["one", "two"]


async def test_trim_keeps_every_unread_and_pending_entry(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    stream = keys.intake()
    ids = [await redis.xadd(stream, {"data": message(f"m{i}").to_json()}) for i in range(5)]
    assert await bus.trim(stream) == 0  # no group reads it yet: everything is unread
    await bus.ensure_group(stream, ENGINE_GROUP)
    await bus.ensure_group(stream, DELIVERY_GROUP)
    first = await bus.read_intake("a", count=3, block_ms=10)  # engine: m0..m2 delivered
    await bus.ack_intake([first[0][0], first[1][0]])  # m2 still pending
    got = await redis.xreadgroup(DELIVERY_GROUP, "b", {stream: ">"}, count=1)  # other group: m0
    await redis.xack(stream, DELIVERY_GROUP, got[0][1][0][0])
    assert await bus.trim(stream) == 1  # only m0: every group is done with it
    remaining = [entry_id for entry_id, _ in await redis.xrange(stream)]
    assert remaining == ids[1:]
    stats = {g.group: g for g in await bus.stats(stream)}
    assert stats[ENGINE_GROUP].pending == 1 and stats[ENGINE_GROUP].lag == 2
    assert stats[DELIVERY_GROUP].lag == 4 and stats[ENGINE_GROUP].length == 4
