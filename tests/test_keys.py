"""Redis key layout: namespaces isolate deployments, escaped ids never collide, and the
keys written together share one Redis Cluster slot."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.cluster import slot_of
from core.keys import Keys, hash_tag
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


def test_every_key_of_one_user_shares_one_cluster_slot() -> None:
    """What one commit or one erasure writes together hashes to one Redis Cluster slot
    (core.keys' hash tags); separate users, streams and stores spread over the slots."""
    keys = Keys("ns")
    for user in ("alice", "a:b", "we{i}rd}", "{", "}{", "x*y?[z]"):
        conv = ConversationKey(platform="telegram", bot_id="support", chat_id="c:{1}", user_id=user)
        other_chat = ConversationKey(platform="telegram", bot_id="sales", chat_id="c2", user_id=user)
        own = [
            keys.history(conv),
            keys.low_confidence(conv),
            keys.handoff(conv),
            keys.lease(conv),
            keys.inflight(conv),
            keys.conversation_ticket(conv),
            keys.done(conv, "m1"),
            keys.user_index("telegram", user),
            keys.history(other_chat),  # the same user's other conversations too
            keys.applied(keys.history(conv), "change-1"),
        ]
        assert len({slot_of(k) for k in own}) == 1, own
        assert all(hash_tag(k) == Keys.user_tag("telegram", user) for k in own)
    groups = {
        "intake": [
            keys.intake(),
            keys.seen("telegram", "support", "update-1"),
            keys.intake_failures(),
            keys.dead_letters(),
        ],
        "outbound": [keys.outbound("web", "support"), keys.parts_sent("web", "support", "r1")],
        "tickets": [
            keys.ticket("t1"),
            keys.ticket_audit("t1"),
            keys.tickets("open"),
            keys.ticket_reminders(),
            keys.ticket_followups(),
        ],
        "personas": [keys.persona("a"), keys.persona_versions("a"), keys.persona("b")],
        "desk": [keys.desk("account", "ann"), keys.desk("accounts"), keys.desk("session", "x")],
        "streamed": [keys.streamed("slack", "b", "m1"), keys.streamed_edit("slack", "b", "m1")],
    }
    for name, members in groups.items():
        assert len({slot_of(k) for k in members}) == 1, name
    # different users, and the two streams, are not forced into one slot
    users = {slot_of(keys.user_index("web", f"user{n}")) for n in range(50)}
    assert len(users) > 40
    assert slot_of(keys.intake()) != slot_of(keys.outbound("web", "support"))


async def test_the_user_pattern_finds_only_that_users_tagged_keys(redis: aioredis.Redis, keys: Keys) -> None:
    odd = ConversationKey(platform="web", bot_id="support", chat_id="c", user_id="a*[b]")
    near = ConversationKey(platform="web", bot_id="support", chat_id="c", user_id="a*[b]x")
    await redis.set(keys.done(odd, "m1"), "1")
    await redis.set(keys.done(near, "m2"), "1")
    found = [k async for k in redis.scan_iter(match=keys.user_pattern("web", "a*[b]"), count=500)]
    assert found == [keys.done(odd, "m1")]
