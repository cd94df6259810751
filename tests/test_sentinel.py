"""Redis behind Sentinel: the engine and an outbox connect through the Sentinel
(``redis+sentinel://``), answer, and keep answering after the Sentinel promotes the
replica (``SENTINEL FAILOVER``), with the history intact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.connection import connect
from core.delivery import Outbox
from core.engine import EngineConfig
from core.history import History
from core.keys import Keys
from core.messages import IncomingMessage, Reply
from core.persona import Persona, PersonaStore
from core.retry import Backoff
from tests.emulators.redis_topologies import LocalSentinel
from tests.helpers import wait_for
from tests.scripted_models import build_engine

QUICK = Backoff(first=0.05, cap=0.3)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    servers = LocalSentinel(tmp_path)
    try:
        yield servers.start()
    finally:
        servers.stop()


async def test_answers_through_sentinel_before_and_after_a_failover(
    sentinel: LocalSentinel, keys: Keys
) -> None:
    client = await connect(sentinel.url, Path("var"))
    await PersonaStore(client, keys).put(Persona(bot_id="support", display_name="Ava"))
    engine = build_engine(client, keys, config=EngineConfig(block_ms=50, backoff=QUICK))
    delivered: list[Reply] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply)

    outbox = Outbox(engine.bus, "web", "support", deliver, consumer="web-1", backoff=QUICK)
    stop = asyncio.Event()
    delivering = asyncio.create_task(outbox.run(stop))
    first = IncomingMessage("support", "web", "ann", "ann", "where is my order? [track_order:0.9]")
    second = IncomingMessage("support", "web", "ann", "ann", "and now? [track_order:0.9]")
    try:
        async with engine:
            await engine.bus.submit(first)
            await wait_for(lambda: len(delivered) == 1, timeout=20, what="the first reply")
            assert await client.execute_command("WAIT", 1, 5000) == 1  # the replica has it all
            before = sentinel.master_address()

            sentinel.fail_over()
            assert sentinel.master_address() != before
            await engine.bus.submit(second)  # the client asks the Sentinel where the master is now
            await wait_for(lambda: len(delivered) == 2, timeout=30, what="a reply after the failover")
    finally:
        stop.set()
        await asyncio.wait_for(delivering, 10)
    assert [r.in_reply_to for r in delivered] == [first.message_id, second.message_id]
    assert "(history 2)" in delivered[1].text  # the turns written before the failover are there
    turns = await History(client, keys).recent(first.conversation, 10)
    assert [t.role for t in turns] == ["user", "bot", "user", "bot"]
    info = await client.info("replication")
    assert info["role"] == "master" and sentinel.master_address()[1] == sentinel.replica_port
    await client.aclose()
