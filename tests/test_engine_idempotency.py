"""Exactly-once effects: a redelivered intake entry is only acknowledged, two workers
never answer one conversation at once, and a conversation is answered in stream order
even when its entries are spread over workers."""

from __future__ import annotations

import pytest

from core.engine import EngineConfig
from core.history import History
from core.keys import Keys
from core.leases import LeaseLost, entry_score
from core.messages import IncomingMessage, Reply
from core.metrics import DUPLICATES_PREVENTED
from core.persona import Persona, PersonaStore
from tests.scripted_models import ScriptedProvider, build_engine


def msg(text: str, user: str = "ann") -> IncomingMessage:
    return IncomingMessage("support", "web", user, user, text)


@pytest.fixture
async def history(redis, keys: Keys) -> History:
    await PersonaStore(redis, keys).put(Persona(bot_id="support", display_name="Ava"))
    return History(redis, keys, max_turns=50, ttl_seconds=3600)


def worker(redis, keys: Keys, history: History, name: str):
    return build_engine(
        redis, keys, ScriptedProvider(), history=history, config=EngineConfig(consumer=name, block_ms=20)
    )


async def outbound(redis, keys: Keys) -> list[str]:
    return [
        Reply.from_json(f["data"]).in_reply_to for _, f in await redis.xrange(keys.outbound("web", "support"))
    ]


async def test_a_redelivered_entry_is_acknowledged_without_a_second_reply(redis, keys: Keys, history) -> None:
    w1, w2 = worker(redis, keys, history, "w1"), worker(redis, keys, history, "w2")
    first = msg("where is my order?")
    await w1.bus.submit(first)
    batch = await w1.bus.read_intake("w1", block_ms=20)
    # w1 commits, then "crashes" before anything else: the entry is re-read by w2
    assert len(await w1.handle(batch)) == 1
    before = DUPLICATES_PREVENTED._value.get()
    assert await w2.handle(batch) == []  # already committed: acknowledged only
    assert DUPLICATES_PREVENTED._value.get() == before + 1
    assert await outbound(redis, keys) == [first.message_id]
    turns = await history.recent(first.conversation, 10)
    assert [t.role for t in turns] == ["user", "bot"]
    assert await w1.bus.pending_count(keys.intake(), "engine") == 0
    assert await redis.exists(keys.done(first.conversation, first.message_id)) == 1
    assert await redis.ttl(keys.done(first.conversation, first.message_id)) > 0
    assert await redis.exists(keys.inflight(first.conversation), keys.lease(first.conversation)) == 0


async def test_a_conversation_leased_by_one_worker_waits_for_it(redis, keys: Keys, history) -> None:
    w1, w2 = worker(redis, keys, history, "w1"), worker(redis, keys, history, "w2")
    a, b = msg("one"), msg("for bob", user="bob")
    await w1.bus.submit(a)
    await w1.bus.submit(b)
    batch = await w1.bus.read_intake("w1", count=10, block_ms=20)
    await redis.set(keys.lease(a.conversation), "someone-else", px=60_000)  # another worker holds ann
    replies = await w2.handle(batch)
    assert [r.user_id for r in replies] == ["bob"]  # bob is answered, ann's entry stays pending
    assert await w1.bus.pending_count(keys.intake(), "engine") == 1
    await redis.delete(keys.lease(a.conversation))  # the holder finished
    assert [r.user_id for r in await w2.handle(batch)] == ["ann"]
    assert await outbound(redis, keys) == [b.message_id, a.message_id]


async def test_a_later_entry_waits_for_an_older_one_pending_elsewhere(redis, keys: Keys, history) -> None:
    w1, w2 = worker(redis, keys, history, "w1"), worker(redis, keys, history, "w2")
    first, second = msg("first"), msg("second")
    await w1.bus.submit(first)
    (e1,) = await w1.bus.read_intake("w1", count=1, block_ms=20)  # w1 then dies holding it
    await w1.bus.submit(second)
    (e2,) = await w2.bus.read_intake("w2", count=1, block_ms=20)
    assert await w2.handle([e2]) == []  # "first" is still in flight: "second" must wait
    assert [r.in_reply_to for r in await w2.handle([e1, e2])] == [first.message_id, second.message_id]
    turns = await history.recent(first.conversation, 10)
    assert [t.text for t in turns if t.role == "user"] == ["first", "second"]


async def test_an_older_entry_that_vanished_from_the_stream_holds_nothing(redis, keys: Keys, history) -> None:
    w1 = worker(redis, keys, history, "w1")
    gone, kept = msg("deleted by hand"), msg("still here")
    await w1.bus.submit(gone)
    (e1,) = await w1.bus.read_intake("w1", count=1, block_ms=20)
    await redis.xdel(keys.intake(), e1[0])  # its in-flight id stays behind
    await w1.bus.submit(kept)
    batch = await w1.bus.read_intake("w1", count=5, block_ms=20)
    assert await w1.handle(batch) == []  # held once, while the stale id is found and dropped
    assert [r.in_reply_to for r in await w1.handle(batch)] == [kept.message_id]


async def test_a_commit_after_another_worker_committed_is_dropped(redis, keys: Keys, history) -> None:
    w1 = worker(redis, keys, history, "w1")
    m = msg("slow one")
    await w1.bus.submit(m)
    batch = await w1.bus.read_intake("w1", block_ms=20)
    admission = await w1.guard.admit(batch)
    assert [e for e, _ in admission.take] == [batch[0][0]]
    # while w1 works, its lease lapses and another worker commits the same message
    await redis.delete(keys.lease(m.conversation))
    await redis.set(keys.done(m.conversation, m.message_id), batch[0][0])
    with pytest.raises(LeaseLost):
        async with w1.guard.holding(admission):
            await w1._answer(admission)
    assert await outbound(redis, keys) == []


def test_entry_scores_follow_stream_order() -> None:
    assert entry_score("1700000000000-0") < entry_score("1700000000000-1") < entry_score("1700000000001-0")
