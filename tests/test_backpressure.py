"""Backpressure at intake, with real Redis: over the per-user rate limit, or while the
intake backlog is over its bound, the customer gets the persona's text at once and the
message never reaches the intake stream (so never the models)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
import redis.asyncio as aioredis
from limits import parse

from adapters.base import Adapter, Event, Intake
from adapters.webchat import WebChatAdapter
from bots.config import load_settings
from core.admission import Admission
from core.bus import DELIVERY_GROUP, Bus
from core.errors import ConfigError
from core.keys import Keys
from core.messages import IncomingMessage, Reply, Route
from core.persona import Messages, Persona, PersonaStore

SLOW = "Easy there, one at a time please."
BUSY = "We're swamped; try again in a few minutes."


class QuietAdapter(Adapter):
    """A platform whose replies stay on the outbound stream (no outbox runs)."""

    platform: ClassVar[str] = "loop"

    async def connect(self) -> None:
        return None

    async def disconnect(self) -> None:
        return None

    async def send_text(self, reply: Reply, text: str, part: int) -> None:
        raise AssertionError("not started")


async def personas(redis: aioredis.Redis, keys: Keys) -> PersonaStore:
    store = PersonaStore(redis, keys)
    persona = Persona(bot_id="support", display_name="Support")
    await store.put(persona.model_copy(update={"messages": Messages(slow_down=SLOW, busy=BUSY)}))
    return store


def event(user: str, n: int) -> Event:
    return Event(IncomingMessage("support", "loop", user, user, f"message {n}"), f"{user}-{n}", direct=True)


async def outbound_texts(bus: Bus) -> list[tuple[str, str]]:
    entries = await bus.read_outbound("loop", "support", "reader", count=100, block_ms=10)
    return [(reply.user_id, reply.text) for _, reply in entries]


async def test_over_the_rate_limit_the_persona_says_slow_down(redis: aioredis.Redis, keys: Keys) -> None:
    bus = Bus(redis, keys, admission=Admission(redis, keys, per_user=parse("2/minute")))
    adapter = QuietAdapter(bus, bot_id="support", personas=await personas(redis, keys))
    outcomes = [await adapter.accept(event("alice", n)) for n in range(3)]
    assert outcomes == [Intake.SUBMITTED, Intake.SUBMITTED, Intake.SLOWED]
    assert await adapter.accept(event("bob", 0)) == Intake.SUBMITTED  # the limit is per user
    assert await adapter.accept(event("alice", 2)) == Intake.DUPLICATE  # a resent event: answered once
    queued = [m.text for _, m in await bus.read_intake("worker-1", count=10, block_ms=10)]
    assert queued == ["message 0", "message 1", "message 0"]  # alice's third never reached the engine
    assert await outbound_texts(bus) == [("alice", SLOW)]
    assert adapter.stats[Intake.SLOWED.value] == 1


async def test_over_the_backlog_bound_new_messages_get_busy_at_once(
    redis: aioredis.Redis, keys: Keys
) -> None:
    admission = Admission(redis, keys, max_backlog=2, backlog_cache_s=0.0)
    bus = Bus(redis, keys, admission=admission)
    adapter = QuietAdapter(bus, bot_id="support", personas=await personas(redis, keys))
    assert await adapter.accept(event("alice", 0)) == Intake.SUBMITTED
    assert await adapter.accept(event("bob", 0)) == Intake.SUBMITTED
    assert await adapter.accept(event("carol", 0)) == Intake.BUSY  # two wait, none read yet
    assert await redis.xlen(keys.intake()) == 2
    assert await outbound_texts(bus) == [("carol", BUSY)]
    await bus.read_intake("worker-1", count=10, block_ms=10)  # a worker took the backlog
    assert await admission.backlog() == 0
    assert await adapter.accept(event("carol", 1)) == Intake.SUBMITTED


async def test_the_backlog_is_read_once_per_cache_period(redis: aioredis.Redis, keys: Keys) -> None:
    now = [100.0]
    admission = Admission(redis, keys, max_backlog=1, backlog_cache_s=1.0, clock=lambda: now[0])
    bus = Bus(redis, keys)
    assert await admission.backlog() == 0
    await bus.submit(IncomingMessage("support", "loop", "a", "a", "hi"))
    assert await admission.backlog() == 0  # cached
    now[0] += 1.0
    assert await admission.backlog() == 1


async def test_web_chat_customer_gets_slow_down_and_busy_at_once(redis: aioredis.Redis, keys: Keys) -> None:
    """No engine and no outbox run: the answers come without waiting for either."""
    admission = Admission(redis, keys, per_user=parse("1/minute"), max_backlog=1, backlog_cache_s=0.0)
    bus = Bus(redis, keys, admission=admission)
    web = WebChatAdapter(bus, bot_id="support", personas=await personas(redis, keys), reply_timeout=5.0)
    spent = IncomingMessage("support", "web", "ann", "ann", "first")
    assert await bus.admit(spent) == "admit"  # ann's one message this minute
    reply = await asyncio.wait_for(web.ask(IncomingMessage("support", "web", "ann", "ann", "second")), 5)
    assert (reply.text, reply.route) == (SLOW, Route.PROMPT)
    await bus.submit(IncomingMessage("support", "web", "zed", "zed", "queued"))  # the backlog is full
    reply = await asyncio.wait_for(web.ask(IncomingMessage("support", "web", "bea", "bea", "hello")), 5)
    assert reply.text == BUSY
    assert await redis.xlen(keys.intake()) == 1
    assert await bus.pending_count(keys.outbound("web", "support"), DELIVERY_GROUP) == 0


async def test_forget_clears_the_rate_limit_window(redis: aioredis.Redis, keys: Keys) -> None:
    bus = Bus(redis, keys, admission=Admission(redis, keys, per_user=parse("1/minute")))
    message = IncomingMessage("support", "loop", "alice", "alice", "hi")
    assert await bus.admit(message) == "admit"
    assert await bus.admit(message) == "slow_down"
    await bus.forget_user("loop", "alice")
    assert [k async for k in redis.scan_iter(match=f"{keys.namespace}:*") if "alice" in k] == []
    assert await bus.admit(message) == "admit"


def test_a_bad_rate_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_INTAKE_RATE_LIMIT", "lots")
    with pytest.raises(ConfigError, match="CHATBOT_INTAKE_RATE_LIMIT"):
        load_settings()
    monkeypatch.setenv("CHATBOT_INTAKE_RATE_LIMIT", "")
    assert load_settings().intake_rate_limit == ""
