"""Tickets on a real Redis: atomic claims, takeover, release, replies on the customer's
platform, reopening, reminders, live events. Time is an injected clock, never a sleep."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from core.bus import Bus
from core.conversation import Conversations
from core.errors import ClaimConflict, TicketNotFound, TicketStateError
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey, Route
from core.tickets import Ticket, TicketConfig, TicketEvent, Tickets, TicketStatus
from tests.helpers import wait_for

CONFIG = TicketConfig(reopen_window_s=600, claim_timeout_s=300, reminder_interval_s=60, ttl_seconds=3600)
WEB = ConversationKey("support", "web", "c1", "alice")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def history(redis: Any, keys: Keys) -> History:
    return History(redis, keys, max_turns=50, ttl_seconds=3600)


@pytest.fixture
def tickets(redis: Any, keys: Keys, history: History, clock: Clock) -> Tickets:
    conversations = Conversations(redis, keys, history)
    return Tickets(redis, keys, bus=Bus(redis, keys), conversations=conversations, config=CONFIG, clock=clock)


async def escalate(
    tickets: Tickets, conv: ConversationKey = WEB, reason: str = "asked", meta: dict[str, str] | None = None
) -> tuple[str, str]:
    """What the engine does when a conversation escalates."""
    previous = (await tickets.latest_many([conv])).get(conv)
    async with tickets.redis.pipeline(transaction=True) as pipe:
        opened = tickets.queue_open(
            pipe,
            conv,
            previous=previous,
            reason=reason,
            detail="the customer asked for a person",
            intent="contact_human_agent",
            confidence=0.93,
            display_name="Alice",
            meta=meta,
        )
        await pipe.execute()
    return opened


async def actions(tickets: Tickets, ticket_id: str) -> list[str]:
    return [e.action for e in await tickets.audit(ticket_id)]


async def test_open_ticket_fields_queue_and_audit(tickets: Tickets, redis: Any, keys: Keys) -> None:
    ticket_id, kind = await escalate(tickets)
    ticket = await tickets.get(ticket_id)
    assert kind == "opened"
    assert (ticket.status, ticket.assignee, ticket.reason, ticket.intent) == (
        TicketStatus.OPEN,
        "",
        "asked",
        "contact_human_agent",
    )
    assert ticket.conversation == WEB and ticket.display_name == "Alice" and ticket.confidence == 0.93
    assert ticket.to_dict()["status"] == "open" and "meta" not in ticket.to_dict()
    assert [t.id for t in await tickets.list(status=TicketStatus.OPEN)] == [ticket_id]
    assert await tickets.list(status=TicketStatus.CLAIMED) == []
    assert await tickets.counts() == {"open": 1, "claimed": 0, "resolved": 0}
    assert await tickets.counts(platform="telegram") == {"open": 0, "claimed": 0, "resolved": 0}
    [entry] = await tickets.audit(ticket_id)
    assert (entry.actor, entry.action) == ("bot", "opened") and "asked" in entry.detail
    assert await redis.get(keys.handoff(WEB)) == ticket_id  # the bot is muted by this key
    with pytest.raises(TicketNotFound):
        await tickets.get("nope")
    with pytest.raises(TicketNotFound):
        await tickets.claim("nope", "bob")


async def test_two_concurrent_claims_exactly_one_wins(tickets: Tickets) -> None:
    winners: list[str] = []
    for round_ in range(40):
        ticket_id, _ = await escalate(tickets, ConversationKey("support", "web", f"c{round_}", f"u{round_}"))
        results = await asyncio.gather(
            tickets.claim(ticket_id, "alice"), tickets.claim(ticket_id, "bob"), return_exceptions=True
        )
        won = [r for r in results if isinstance(r, Ticket)]
        lost = [r for r in results if not isinstance(r, Ticket)]
        assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], ClaimConflict), results
        stored = await tickets.get(ticket_id)
        assert stored.status is TicketStatus.CLAIMED and stored.assignee == won[0].assignee
        assert (await actions(tickets, ticket_id)).count("claimed") == 1
        winners.append(won[0].assignee)
    assert set(winners) <= {"alice", "bob"}


async def test_stale_claim_can_be_taken_over_and_the_audit_says_so(tickets: Tickets, clock: Clock) -> None:
    ticket_id, _ = await escalate(tickets)
    await tickets.claim(ticket_id, "alice")
    clock.advance(299)
    with pytest.raises(ClaimConflict, match="claimed by alice"):
        await tickets.claim(ticket_id, "bob")
    await tickets.reply(ticket_id, "alice", "Looking into it.")  # activity renews the claim
    clock.advance(299)
    with pytest.raises(ClaimConflict):
        await tickets.resolve(ticket_id, "bob")
    clock.advance(2)
    taken = await tickets.claim(ticket_id, "bob")
    assert taken.assignee == "bob" and taken.status is TicketStatus.CLAIMED
    last = (await tickets.audit(ticket_id))[-1]
    assert (last.actor, last.action) == ("bob", "takeover")
    assert "from alice" in last.detail and "inactive for 5 min" in last.detail
    with pytest.raises(ClaimConflict):  # now alice is the one who must wait
        await tickets.reply(ticket_id, "alice", "still me")


async def test_release_puts_the_ticket_back_in_the_queue(tickets: Tickets) -> None:
    ticket_id, _ = await escalate(tickets)
    with pytest.raises(TicketStateError, match="not claimed"):
        await tickets.release(ticket_id, "alice")
    await tickets.claim(ticket_id, "alice")
    with pytest.raises(ClaimConflict):
        await tickets.release(ticket_id, "bob")
    released = await tickets.release(ticket_id, "alice")
    assert released.status is TicketStatus.OPEN and released.assignee == ""
    stored = await tickets.get(ticket_id)
    assert stored.status is TicketStatus.OPEN and stored.assignee == "" and stored.claimed_at is None
    assert [t.id for t in await tickets.list(status=TicketStatus.OPEN)] == [ticket_id]
    assert await tickets.counts() == {"open": 1, "claimed": 0, "resolved": 0}
    assert (await tickets.claim(ticket_id, "bob")).assignee == "bob"
    assert await actions(tickets, ticket_id) == ["opened", "claimed", "released", "claimed"]


async def test_reply_goes_to_the_customers_platform_and_history(
    tickets: Tickets, redis: Any, keys: Keys, history: History
) -> None:
    conv = ConversationKey("support", "slack", "C1", "U1")
    meta = {"channel": "C1", "thread_ts": "1700000000.1"}
    ticket_id, _ = await escalate(tickets, conv, meta=meta)
    turn = await tickets.reply(ticket_id, "dana", "  Hi, Dana here. Let me check.  ")
    assert (turn.role, turn.text, turn.display_name) == ("agent", "Hi, Dana here. Let me check.", "dana")
    bus = Bus(redis, keys)
    [(_id, reply)] = await bus.read_outbound("slack", "support", "test", block_ms=10)
    assert reply.text == "Hi, Dana here. Let me check." and reply.route is Route.HUMAN
    assert (reply.chat_id, reply.user_id) == ("C1", "U1")
    assert reply.meta == {**meta, "agent": "dana"}  # delivered in the customer's thread
    assert await bus.read_outbound("web", "support", "test", block_ms=10) == []
    [stored] = await history.recent(conv, 10)
    assert stored == turn
    ticket = await tickets.get(ticket_id)  # replying to an open ticket claims it
    assert ticket.status is TicketStatus.CLAIMED and ticket.assignee == "dana"
    assert await actions(tickets, ticket_id) == ["opened", "claimed", "replied"]
    with pytest.raises(TicketStateError, match="needs some text"):
        await tickets.reply(ticket_id, "dana", "   ")
    await tickets.resolve(ticket_id, "dana")
    with pytest.raises(TicketStateError, match="resolved"):
        await tickets.reply(ticket_id, "dana", "one more thing")


async def test_transcript_is_the_live_conversation(tickets: Tickets, history: History) -> None:
    await history.append_turns(WEB, [Turn("user", "my parcel is lost"), Turn("bot", "Sorry to hear that")])
    ticket_id, _ = await escalate(tickets)
    await history.append_turns(WEB, [Turn("user", "it was order 123")])  # after the hand-off
    await tickets.reply(ticket_id, "dana", "Found it.")
    turns = await tickets.transcript(ticket_id)
    assert [(t.role, t.text) for t in turns] == [
        ("user", "my parcel is lost"),
        ("bot", "Sorry to hear that"),
        ("user", "it was order 123"),
        ("agent", "Found it."),
    ]


async def test_resolve_hands_back_and_reopen_only_within_the_window(
    tickets: Tickets, clock: Clock, redis: Any, keys: Keys
) -> None:
    first, _ = await escalate(tickets)
    await tickets.claim(first, "dana")
    resolved = await tickets.resolve(first, "dana")
    assert resolved.status is TicketStatus.RESOLVED and resolved.resolved_at == clock.now
    assert not await redis.exists(keys.handoff(WEB))  # the bot answers again
    with pytest.raises(TicketStateError):
        await tickets.claim(first, "dana")
    clock.advance(599)
    again, kind = await escalate(tickets, reason="low_confidence")
    assert (again, kind) == (first, "reopened")
    ticket = await tickets.get(first)
    assert (ticket.status, ticket.assignee, ticket.resolved_at, ticket.reason) == (
        TicketStatus.OPEN,
        "",
        None,
        "low_confidence",
    )
    assert await redis.get(keys.handoff(WEB)) == first
    assert await actions(tickets, first) == ["opened", "claimed", "resolved", "reopened"]
    await tickets.resolve(first, "dana")
    clock.advance(601)
    later, kind = await escalate(tickets)
    assert kind == "opened" and later != first
    assert await tickets.counts() == {"open": 1, "claimed": 0, "resolved": 1}


async def test_still_waiting_reminder_once_per_interval(
    tickets: Tickets, clock: Clock, redis: Any, keys: Keys, history: History
) -> None:
    ticket_id, _ = await escalate(tickets)
    clock.advance(59)
    assert await tickets.due_reminders() == []
    clock.advance(1)
    assert [t.id for t in await tickets.due_reminders()] == [ticket_id]
    assert await tickets.remind(ticket_id, "still waiting")
    assert not await tickets.remind(ticket_id, "still waiting")  # not due again yet
    assert await tickets.due_reminders() == []
    clock.advance(60)
    assert [t.id for t in await tickets.due_reminders()] == [ticket_id]
    await tickets.claim(ticket_id, "dana")
    assert await tickets.due_reminders() == []  # a person has it: no more reminders
    assert not await tickets.remind(ticket_id, "still waiting")
    sent = await Bus(redis, keys).read_outbound("web", "support", "test", block_ms=10)
    assert [r.text for _id, r in sent] == ["still waiting"]
    assert [t.text for t in await history.recent(WEB, 10)] == ["still waiting"]
    assert (await actions(tickets, ticket_id)).count("reminded") == 1


async def test_events_are_published_for_live_pages(tickets: Tickets, redis: Any, keys: Keys) -> None:
    events: list[TicketEvent] = []

    async def listen() -> None:
        async for event in tickets.subscribe():
            events.append(event)

    task = asyncio.create_task(listen())

    async def subscribed() -> bool:
        return dict(await redis.pubsub_numsub(keys.ticket_events())).get(keys.ticket_events(), 0) > 0

    await wait_for(subscribed, what="subscription")
    ticket_id, _ = await escalate(tickets)
    await tickets.claim(ticket_id, "dana")
    await tickets.reply(ticket_id, "dana", "hello")
    await tickets.release(ticket_id, "dana")
    await tickets.resolve(ticket_id, "dana")
    await wait_for(lambda: len(events) >= 5, what="five events")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [e.kind for e in events] == ["opened", "claimed", "replied", "released", "resolved"]
    assert {e.ticket_id for e in events} == {ticket_id}


async def test_forgetting_a_user_removes_their_tickets(
    tickets: Tickets, history: History, clock: Clock
) -> None:
    ticket_id, _ = await escalate(tickets)
    await history.append_turns(WEB, [Turn("user", "hi")])
    assert await history.forget_user("web", "alice") > 0
    clock.advance(3600)
    assert await tickets.due_reminders() == []
    with pytest.raises(TicketNotFound):
        await tickets.get(ticket_id)
    assert await tickets.list() == [] and await tickets.counts() == {"open": 0, "claimed": 0, "resolved": 0}


async def test_a_vanished_ticket_is_dropped_from_the_reminders(
    tickets: Tickets, clock: Clock, redis: Any, keys: Keys
) -> None:
    ticket_id, _ = await escalate(tickets)
    await redis.delete(keys.ticket(ticket_id))  # e.g. erased by an older version
    clock.advance(60)
    assert await tickets.due_reminders() == []
    assert await redis.zcard(keys.ticket_reminders()) == 0
