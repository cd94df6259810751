from __future__ import annotations

from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey

ALICE = ConversationKey("support", "telegram", "chat:1", "alice")
ALICE_OTHER_CHAT = ConversationKey("support", "telegram", "chat:2", "alice")
BOB = ConversationKey("support", "telegram", "chat:1", "bob")


class CountingRedis:
    """Wraps a client to count round trips (commands or pipeline executions)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.round_trips = 0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name == "pipeline":

            def pipeline(*a, **k):
                pipe = attr(*a, **k)
                execute = pipe.execute

                async def counted(*ea, **ek):
                    self.round_trips += 1
                    return await execute(*ea, **ek)

                pipe.execute = counted
                return pipe

            return pipeline
        if callable(attr):

            async def call(*a, **k):
                self.round_trips += 1
                return await attr(*a, **k)

            return call
        return attr


async def test_append_and_read_cost_one_round_trip_each_at_any_length(redis, keys: Keys) -> None:
    counting = CountingRedis(redis)
    history = History(counting, keys, max_turns=5000)
    for size in (10, 2000):
        await history.append_turns(ALICE, [Turn("user", f"m{i}") for i in range(size)])
        before = counting.round_trips
        await history.append_turns(ALICE, [Turn("user", "new"), Turn("bot", "reply")])
        window = await history.recent(ALICE, 8)
        assert counting.round_trips - before == 2
        assert [t.text for t in window][-2:] == ["new", "reply"] and len(window) == 8


async def test_cap_keeps_the_newest_turns(redis, keys: Keys) -> None:
    history = History(redis, keys, max_turns=5)
    for i in range(12):
        await history.append_turns(ALICE, [Turn("user", str(i))])
    assert [t.text for t in await history.recent(ALICE, 100)] == ["7", "8", "9", "10", "11"]


async def test_every_write_renews_the_idle_ttl(redis, keys: Keys) -> None:
    history = History(redis, keys, ttl_seconds=3600)
    key, index = keys.history(ALICE), keys.user_index("telegram", "alice")
    await history.append_turns(ALICE, [Turn("user", "hi")])
    assert 3_500_000 < await redis.pttl(key) <= 3_600_000
    assert 3_500_000 < await redis.pttl(index) <= 3_600_000
    await redis.pexpire(key, 5_000)  # as if the conversation had been idle for almost an hour
    await redis.pexpire(index, 5_000)
    await history.append_turns(ALICE, [Turn("user", "back again")])
    assert 3_500_000 < await redis.pttl(key) <= 3_600_000
    assert 3_500_000 < await redis.pttl(index) <= 3_600_000


async def test_users_and_chats_are_isolated(redis, keys: Keys) -> None:
    history = History(redis, keys)
    await history.append_turns(ALICE, [Turn("user", "a1")])
    await history.append_turns(ALICE_OTHER_CHAT, [Turn("user", "a2")])
    await history.append_turns(BOB, [Turn("user", "b1")])
    assert [t.text for t in await history.recent(ALICE)] == ["a1"]
    assert [t.text for t in await history.recent(ALICE_OTHER_CHAT)] == ["a2"]
    assert [t.text for t in await history.recent(BOB)] == ["b1"]


async def test_ids_with_colons_cannot_collide(redis, keys: Keys) -> None:
    history = History(redis, keys)
    tricky_a = ConversationKey("support", "slack", "a:b", "c")
    tricky_b = ConversationKey("support", "slack", "a", "b:c")
    await history.append_turns(tricky_a, [Turn("user", "A")])
    assert await history.recent(tricky_b) == []


async def test_export_and_forget_remove_everything_about_a_user(redis, keys: Keys) -> None:
    history = History(redis, keys)
    await history.append_turns(ALICE, [Turn("user", "hello"), Turn("bot", "hi")])
    await history.append_turns(ALICE_OTHER_CHAT, [Turn("user", "again")])
    await history.append_turns(BOB, [Turn("user", "bob's")])
    exported = await history.export_user("telegram", "alice")
    assert sorted(len(v) for v in exported.values()) == [1, 2]
    assert await history.forget_user("telegram", "alice") == 2
    assert await history.recent(ALICE) == [] and await history.recent(ALICE_OTHER_CHAT) == []
    assert await redis.exists(keys.user_index("telegram", "alice")) == 0
    assert [t.text for t in await history.recent(BOB)] == ["bob's"]
    assert await history.forget_user("telegram", "alice") == 0
