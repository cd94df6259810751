"""The fact guard wired into the engine: the customer gets the guarded reply, history
stores it, and the replacements are counted."""

from __future__ import annotations

from prometheus_client import REGISTRY

from core.bus import Bus
from core.engine import Engine
from core.finishing import finish_reply
from core.history import History, Turn
from core.keys import Keys
from core.messages import IncomingMessage, Route
from core.persona import Persona, PersonaStore
from core.router import Decision
from tests.scripted_models import ScriptedProvider, build_engine

FACTS = {"Customer Support Phone Number": "+1 555 0100", "Live Chat": "live chat"}
PERSONA = Persona(bot_id="support", display_name="Ava", facts=FACTS)
MODEL = Decision(Route.GENERATE, "intent cancel_order -> generate", "model", intent="cancel_order")


def replaced(kind: str) -> float:
    return REGISTRY.get_sample_value("chatbot_facts_replaced_total", {"kind": kind}) or 0.0


def withdrawn() -> float:
    return REGISTRY.get_sample_value("chatbot_replies_withdrawn_total") or 0.0


def msg(text: str) -> IncomingMessage:
    return IncomingMessage(bot_id="support", platform="web", chat_id="c1", user_id="alice", text=text)


async def answer(engine: Engine, bus: Bus, text: str):
    assert await bus.submit(msg(text))
    batch = await bus.read_intake(engine.config.consumer, count=10, block_ms=100)
    return (await engine.handle(batch))[0]


def test_a_model_reply_loses_the_number_nobody_wrote_and_keeps_the_customers() -> None:
    before = replaced("number")
    generated = (
        "Order 12345 is cancelled; we refunded purchase 370795561790. Call {{Customer Support Phone Number}}."
    )
    text, decision = finish_reply(MODEL, PERSONA, generated, (), "cancel order 12345 please")
    assert text == "Order 12345 is cancelled; we refunded your purchase. Call +1 555 0100."
    assert decision == MODEL
    assert replaced("number") == before + 1


def test_an_earlier_customer_or_agent_turn_and_a_persona_fact_count_as_said() -> None:
    history = (
        Turn(role="user", text="my order is 5550001", timestamp=0.0),
        Turn(role="bot", text="Ticket 777111 is yours", timestamp=0.0),  # the bot's own words do not count
        Turn(role="agent", text="your refund reference is 4242-99", timestamp=0.0),
    )
    generated = "Order 5550001, refund 4242-99 and ticket 777111: call +1 555 0100 or use {{Live Chat}}."
    text, _ = finish_reply(MODEL, PERSONA, generated, history, "thanks")
    assert text == (
        "Order 5550001, refund 4242-99 and your ticket number: call +1 555 0100 or use live chat."
    )


def test_canned_and_fixed_texts_are_never_guarded() -> None:
    persona = PERSONA.model_copy(
        update={"messages": PERSONA.messages.model_copy(update={"rephrase": "Call 9999-1234"})}
    )
    rephrase = Decision(Route.REPHRASE, "low confidence", "rephrase")
    assert finish_reply(rephrase, persona, "", (), "hm") == ("Call 9999-1234", rephrase)


def test_a_reply_that_was_only_an_invented_number_becomes_the_rephrase_text() -> None:
    before = withdrawn()
    text, decision = finish_reply(MODEL, PERSONA, "370795561790", (), "cancel my order")
    assert text == PERSONA.messages.rephrase
    assert (decision.route, decision.says, decision.intent) == (Route.REPHRASE, "rephrase", "cancel_order")
    assert withdrawn() == before + 1


async def test_through_the_engine_the_customer_and_history_get_the_guarded_text(redis, keys: Keys) -> None:
    await PersonaStore(redis, keys).put(PERSONA)
    history = History(redis, keys, max_turns=50, ttl_seconds=3600)
    provider = ScriptedProvider()
    provider.replies.script = {
        "where is my order 12345? [track_order:0.9]": "Order 12345 left our warehouse.",
        "I want to cancel my order [cancel_order:0.9]": (
            "I understand you would like to cancel your order number 370795561790 and order 12345."
        ),
        "cancel it now [cancel_order:0.9]": "370795561790",
    }
    engine = build_engine(redis, keys, provider, history=history)
    bus = engine.bus
    before = replaced("number")

    first = await answer(engine, bus, "where is my order 12345? [track_order:0.9]")
    assert first.text == "Order 12345 left our warehouse."
    second = await answer(engine, bus, "I want to cancel my order [cancel_order:0.9]")
    # 12345 was written by the customer one turn earlier; the other number by nobody
    assert second.text == "I understand you would like to cancel your order and order 12345."
    assert second.route is Route.GENERATE
    third = await answer(engine, bus, "cancel it now [cancel_order:0.9]")
    assert (third.text, third.route) == (PERSONA.messages.rephrase, Route.REPHRASE)
    assert replaced("number") == before + 2

    turns = await history.recent(msg("x").conversation, 10)
    bot_turns = [(t.text, t.route) for t in turns if t.role == "bot"]
    assert bot_turns == [
        (first.text, "generate"),
        (second.text, "generate"),
        (PERSONA.messages.rephrase, "rephrase"),
    ]
    assert all("370795561790" not in t.text for t in turns)
