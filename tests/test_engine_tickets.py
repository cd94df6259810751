"""The engine with the support desk: a ticket per hand-off, one acknowledgement, a live
transcript, "still waiting" reminders, hand-back, and an agent's reply reaching a
Telegram customer through the real adapter and the Bot API emulator."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from adapters.config import TelegramConfig
from adapters.telegram import TelegramAdapter
from core.bus import Bus
from core.engine import Engine, EngineConfig
from core.history import History
from core.keys import Keys
from core.messages import IncomingMessage, Reply, Route
from core.persona import Messages, Persona, PersonaStore
from core.retry import Backoff
from core.tickets import TicketConfig, TicketEvent, TicketStatus
from tests.emulators.telegram import TelegramEmulator
from tests.helpers import wait_for
from tests.scripted_models import ScriptedProvider, build_engine

SAYS = Messages()
ASK = "I want to talk to a person [contact_human_agent:0.95]"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def msg(text: str, user: str = "alice", platform: str = "web", chat: str = "c1") -> IncomingMessage:
    return IncomingMessage("support", platform, chat, user, text, display_name=user.title())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def setup(redis: Any, keys: Keys, clock: Clock) -> tuple[Engine, ScriptedProvider]:
    await PersonaStore(redis, keys).put(Persona(bot_id="support", display_name="Ava"))
    provider = ScriptedProvider()
    engine = build_engine(
        redis,
        keys,
        provider,
        history=History(redis, keys, max_turns=50, ttl_seconds=3600),
        config=EngineConfig(block_ms=50, reminder_poll_s=0.01),
        tickets=TicketConfig(reopen_window_s=600, claim_timeout_s=300, reminder_interval_s=60),
        clock=clock,
    )
    return engine, provider


async def say(engine: Engine, *messages: IncomingMessage) -> list[Reply]:
    for m in messages:
        assert await engine.bus.submit(m)
    return await engine.handle(await engine.bus.read_intake(engine.config.consumer, count=50, block_ms=100))


async def outbound(engine: Engine, platform: str = "web") -> list[str]:
    entries = await engine.bus.read_outbound(platform, "support", "test", count=100, block_ms=10)
    return [reply.text for _id, reply in entries]


async def test_hand_off_acknowledges_once_and_keeps_the_transcript_live(setup) -> None:
    engine, _provider = setup
    await say(engine, msg("where is my order?"))
    [handoff] = await say(engine, msg(ASK))
    assert handoff.route is Route.ESCALATE and handoff.text == SAYS.handoff
    [ticket] = await engine.tickets.list()
    assert (ticket.status, ticket.reason, ticket.intent, ticket.display_name) == (
        TicketStatus.OPEN,
        "asked",
        "contact_human_agent",
        "Alice",
    )
    assert ticket.detail == "the customer asked for a person" and ticket.confidence == 0.95
    first, second, third = [
        (await say(engine, msg(text)))[0] for text in ("hello?", "it's order 12", "anyone?")
    ]
    assert first.route is Route.HUMAN and first.text == SAYS.handoff_waiting
    assert (second.route, second.text, third.text) == (Route.HUMAN, "", "")
    sent = await outbound(engine)
    # nothing after the one acknowledgement but empty receipts (platforms send nothing for them)
    assert sent[1:] == [SAYS.handoff, SAYS.handoff_waiting, "", ""]
    transcript = [(t.role, t.text) for t in await engine.tickets.transcript(ticket.id)]
    assert transcript[2:] == [
        ("user", ASK),
        ("bot", SAYS.handoff),
        ("user", "hello?"),
        ("bot", SAYS.handoff_waiting),
        ("user", "it's order 12"),
        ("user", "anyone?"),
    ]
    assert (await engine.tickets.get(ticket.id)).updated_at >= ticket.updated_at


async def test_each_rule_names_its_reason(setup) -> None:
    engine, _provider = setup
    await say(engine, msg("this is awful [complaint:0.9]", user="carol"))
    for text in ("hmm [track_order:0.1]", "what [oos:0.9]", "eh [track_order:0.2]"):
        await say(engine, msg(text, user="dave"))
    reasons = {t.user_id: (t.reason, t.detail) for t in await engine.tickets.list()}
    assert reasons == {
        "carol": ("intent", "intent complaint -> escalate"),
        "dave": ("low_confidence", "3 unsure turns in a row"),
    }


async def test_customer_messages_on_a_held_conversation_are_published(setup, redis, keys) -> None:
    engine, _provider = setup
    await say(engine, msg(ASK))
    events: list[TicketEvent] = []

    async def listen() -> None:
        async for event in engine.tickets.subscribe():
            events.append(event)

    task = asyncio.create_task(listen())

    async def subscribed() -> bool:
        return dict(await redis.pubsub_numsub(keys.ticket_events()))[keys.ticket_events()] > 0

    await wait_for(subscribed, what="subscription")
    await say(engine, msg("more details"), msg("other customer", user="bob"))
    await wait_for(lambda: events, what="a message event")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    [ticket] = await engine.tickets.list()
    assert [(e.ticket_id, e.kind) for e in events] == [(ticket.id, "message")]


async def test_still_waiting_once_per_interval_until_claimed(setup, clock: Clock) -> None:
    engine, _provider = setup
    await say(engine, msg(ASK))
    [ticket] = await engine.tickets.list()
    assert await engine.send_reminders() == 0
    clock.advance(60)
    assert await engine.send_reminders() == 1
    assert await engine.send_reminders() == 0  # once per interval, however often it looks
    clock.advance(59)
    assert await engine.send_reminders() == 0
    clock.advance(1)
    assert await engine.send_reminders() == 1
    await engine.tickets.claim(ticket.id, "dana")
    clock.advance(600)
    assert await engine.send_reminders() == 0  # a person has it now
    assert await outbound(engine) == [SAYS.handoff, SAYS.still_waiting, SAYS.still_waiting]


async def test_reminder_task_runs_with_the_engine(setup, clock: Clock) -> None:
    engine, _provider = setup
    await say(engine, msg(ASK))
    [ticket] = await engine.tickets.list()
    clock.advance(60)
    async with engine:
        await wait_for(
            lambda: _count(engine, ticket.id, "reminded"), what="the reminder task to tell the customer"
        )
        await say(engine, msg("still there?"))  # the task keeps polling meanwhile
    assert not engine.running
    assert await _count(engine, ticket.id, "reminded") == 1  # polled many times, told once


async def _count(engine: Engine, ticket_id: str, action: str) -> int:
    return sum(e.action == action for e in await engine.tickets.audit(ticket_id))


async def test_resolve_hands_back_and_the_bot_sees_the_agents_turns(setup) -> None:
    engine, provider = setup
    await say(engine, msg(ASK))
    [ticket] = await engine.tickets.list()
    await engine.tickets.reply(ticket.id, "dana", "Your refund was sent today.")
    [quiet] = await say(engine, msg("thank you!"))
    assert quiet.route is Route.HUMAN
    await engine.tickets.resolve(ticket.id, "dana")
    [back] = await say(engine, msg("and when will it arrive?"))
    assert back.route is Route.GENERATE and back.text.startswith("answer to and when will it arrive?")
    history = provider.replies.batches[-1][0].history
    assert ("agent", "Your refund was sent today.", "dana") in [
        (t.role, t.text, t.display_name) for t in history
    ]


async def test_escalating_again_reopens_within_the_window_only(setup, clock: Clock) -> None:
    engine, _provider = setup
    await say(engine, msg(ASK))
    [ticket] = await engine.tickets.list()
    await engine.tickets.resolve(ticket.id, "dana")
    clock.advance(300)
    [reply] = await say(engine, msg(ASK))
    assert reply.route is Route.ESCALATE
    [reopened] = await engine.tickets.list()
    assert reopened.id == ticket.id and reopened.status is TicketStatus.OPEN
    assert [e.action for e in await engine.tickets.audit(ticket.id)][-1] == "reopened"
    [ack] = await say(engine, msg("hi again"))  # a reopened ticket acknowledges once more
    assert ack.text == SAYS.handoff_waiting
    await engine.tickets.resolve(ticket.id, "dana")
    clock.advance(601)
    await say(engine, msg(ASK))
    assert len(await engine.tickets.list()) == 2


async def test_a_hand_off_no_ticket_holds_is_given_back(setup, redis, keys) -> None:
    engine, _provider = setup
    conv = msg("x").conversation
    await redis.set(keys.handoff(conv), "escalation-from-an-older-version")
    [reply] = await say(engine, msg("hello"))
    assert reply.route is Route.GENERATE
    assert not await redis.exists(keys.handoff(conv))


async def test_agent_reply_reaches_a_telegram_customer(setup, redis, keys) -> None:
    engine, _provider = setup
    bus = Bus(redis, keys)
    token = "123456:TEST-token_abc"
    async with TelegramEmulator() as tg:
        bot = tg.add_bot(token, "shop_bot")
        config = TelegramConfig(
            token=token, api_base_url=tg.base_url, poll_timeout=1, connect_timeout=2, read_timeout=5
        )
        adapter = TelegramAdapter(bus, config, bot_id="support", backoff=Backoff(first=0.05))
        async with adapter, engine:
            bot.dm(ASK)
            await wait_for(lambda: SAYS.handoff in bot.texts(42), what="the hand-off message")
            [ticket] = await engine.tickets.list()
            assert (ticket.platform, ticket.chat_id) == ("telegram", "42")
            await engine.tickets.reply(ticket.id, "dana", "Hi, I'm Dana from support.")
            await wait_for(lambda: "Hi, I'm Dana from support." in bot.texts(42), what="the agent's reply")
