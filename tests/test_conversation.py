"""core/conversation.py: a wave's state in one round trip, updates inside a transaction."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.conversation import Conversations, ConversationState
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey
from tests.test_history import CountingRedis

ALICE = ConversationKey("support", "web", "c1", "alice")
BOB = ConversationKey("support", "web", "c1", "bob")


def store(redis: aioredis.Redis | CountingRedis, keys: Keys) -> Conversations:
    return Conversations(redis, keys, History(redis, keys, ttl_seconds=3600))  # type: ignore[arg-type]


async def commit(conversations: Conversations, *queued: tuple[str, ConversationKey, object]) -> None:
    async with conversations.redis.pipeline(transaction=True) as pipe:
        for writer, conv, value in queued:
            getattr(conversations, writer)(pipe, conv, value)
        await pipe.execute()


async def test_a_new_conversation_has_an_empty_state(redis, keys: Keys) -> None:
    assert await store(redis, keys).load([(ALICE, 8)]) == [ConversationState()]


async def test_load_reads_every_conversation_of_a_wave_in_one_round_trip(redis, keys: Keys) -> None:
    counting = CountingRedis(redis)
    conversations = store(counting, keys)
    turns = [Turn("user", str(i), timestamp=0.0) for i in range(5)]
    await commit(conversations, ("queue_turns", ALICE, turns), ("queue_unsure_streak", BOB, 2))
    await commit(conversations, ("queue_hand_off", BOB, "esc-1"))
    before = counting.round_trips
    alice, bob, alice_no_window = await conversations.load([(ALICE, 3), (BOB, 8), (ALICE, 0)])
    assert counting.round_trips - before == 1
    assert [t.text for t in alice.history] == ["2", "3", "4"]
    assert (alice.handed_off, alice.unsure_streak) == (False, 0)
    assert (bob.history, bob.handed_off, bob.unsure_streak) == ((), True, 2)
    assert alice_no_window.history == ()


async def test_a_zero_streak_removes_the_key_and_hand_back_clears_the_flag(redis, keys: Keys) -> None:
    conversations = store(redis, keys)
    await commit(conversations, ("queue_unsure_streak", ALICE, 1), ("queue_hand_off", ALICE, "esc-1"))
    assert await redis.get(keys.handoff(ALICE)) == "esc-1"
    assert 3_500 < await redis.ttl(keys.low_confidence(ALICE)) <= 3_600
    await commit(conversations, ("queue_unsure_streak", ALICE, 0))
    async with redis.pipeline(transaction=True) as pipe:
        conversations.queue_hand_back(pipe, ALICE)
        await pipe.execute()
    assert await redis.exists(keys.low_confidence(ALICE), keys.handoff(ALICE)) == 0
    assert await conversations.load([(ALICE, 8)]) == [ConversationState()]


async def test_state_keys_are_indexed_so_forgetting_a_user_erases_them(redis, keys: Keys) -> None:
    conversations = store(redis, keys)
    await commit(
        conversations,
        ("queue_turns", ALICE, [Turn("user", "hi")]),
        ("queue_unsure_streak", ALICE, 1),
        ("queue_hand_off", ALICE, "esc-1"),
    )
    assert await conversations.history.forget_user("web", "alice") == 3
    assert await conversations.load([(ALICE, 8)]) == [ConversationState()]
