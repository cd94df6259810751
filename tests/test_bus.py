from __future__ import annotations

from core.bus import Bus
from core.keys import Keys
from core.messages import IncomingMessage, Reply, Route


def message(text: str = "hi") -> IncomingMessage:
    return IncomingMessage("support", "slack", "C1", "U1", text)


async def test_duplicate_event_is_taken_once(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    assert await bus.submit(message(), "Ev1") is True
    assert await bus.submit(message(), "Ev1") is False
    assert await bus.submit(message(), "Ev2") is True
    assert len(await bus.read_intake("c1", block_ms=10)) == 2


async def test_unacknowledged_entries_are_read_again_after_a_restart(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    await bus.submit(message("one"))
    await bus.submit(message("two"))
    first = await bus.read_intake("engine-1", block_ms=10)
    assert [m.text for _, m in first] == ["one", "two"]
    restarted = Bus(redis, keys)  # a new process, same consumer name, nothing acked
    again = await restarted.read_intake("engine-1", block_ms=10)
    assert [m.text for _, m in again] == ["one", "two"]
    await restarted.ack_intake([eid for eid, _ in again])
    assert await restarted.read_intake("engine-1", block_ms=10) == []


async def test_stale_entries_of_a_dead_consumer_can_be_claimed(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    await bus.submit(message("orphan"))
    await bus.read_intake("dead-consumer", block_ms=10)
    claimed = await bus.claim_stale(keys.intake(), "engine", "engine-2", min_idle_ms=0)
    assert [IncomingMessage.from_json(raw).text for _, raw in claimed] == ["orphan"]


async def test_replies_round_trip_on_the_platform_stream(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    reply = Reply.to(message(), "hello 👋", Route.GENERATE, intent="greet", confidence=0.8)
    await bus.publish_reply(reply)
    [(entry_id, got)] = await bus.read_outbound("slack", "support", "d1", block_ms=10)
    assert got == reply
    await bus.ack_outbound("slack", "support", [entry_id])
    assert await bus.pending_count(keys.outbound("slack", "support"), "delivery") == 0


async def test_two_bots_on_one_platform_keep_their_events_and_replies_apart(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    shop = IncomingMessage("shop", "telegram", "42", "42", "hi")
    bank = IncomingMessage("bank", "telegram", "42", "42", "hi")
    # Telegram numbers updates per bot token: update 7 of one bot is not update 7 of another
    assert await bus.submit(shop, "7") and await bus.submit(bank, "7")
    assert not await bus.submit(shop, "7")
    await bus.publish_reply(Reply.to(shop, "from shop", Route.GENERATE))
    await bus.publish_reply(Reply.to(bank, "from bank", Route.GENERATE))
    [(_, got)] = await bus.read_outbound("telegram", "bank", "d1", block_ms=10)
    assert got.text == "from bank"
