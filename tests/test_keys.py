"""Redis key layout: namespaces isolate deployments, escaped ids never collide."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.keys import Keys
from core.messages import ConversationKey


def test_ids_with_separators_do_not_collide() -> None:
    keys = Keys("ns")
    # Without escaping, user "a:b" on chat "c" and user "a" on chat "b:c" would share a key.
    one = ConversationKey(platform="telegram", bot_id="support", chat_id="c", user_id="a:b")
    two = ConversationKey(platform="telegram", bot_id="support", chat_id="b:c", user_id="a")
    assert keys.history(one) != keys.history(two)
    assert keys.user_index("web", "x:y") != keys.user_index("web:x", "y")


async def test_pattern_matches_only_its_own_namespace(redis: aioredis.Redis, keys: Keys) -> None:
    other = Keys(keys.namespace + "-other")
    try:
        await redis.set(keys.persona("support"), "mine")
        await redis.set(other.persona("support"), "theirs")
        found = [k async for k in redis.scan_iter(match=keys.pattern(), count=500)]
        assert found == [keys.persona("support")]
    finally:
        await redis.delete(other.persona("support"))
