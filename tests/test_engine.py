"""The engine through the real streams and a real Redis, with scripted models."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.bus import Bus
from core.engine import Engine, EngineConfig
from core.history import History
from core.keys import Keys
from core.messages import IncomingMessage, Route
from core.persona import Persona, PersonaStore
from core.protocols import GenerationRequest, IntentPrediction
from core.retry import Backoff
from tests.helpers import wait_for
from tests.scripted_models import ScriptedIntents, ScriptedProvider, build_engine


def persona(**changes: object) -> Persona:
    base = Persona(
        bot_id="support", display_name="Ava", facts={"Customer Support Phone Number": "+1 555 0100"}
    )
    return base.model_copy(update=changes) if changes else base


def msg(text: str, user: str = "alice", chat: str = "c1", platform: str = "web") -> IncomingMessage:
    return IncomingMessage(bot_id="support", platform=platform, chat_id=chat, user_id=user, text=text)


@pytest.fixture
async def setup(redis, keys: Keys):
    history = History(redis, keys, max_turns=50, ttl_seconds=3600)
    await PersonaStore(redis, keys).put(persona())
    provider = ScriptedProvider()
    engine = build_engine(
        redis, keys, provider, history=history, config=EngineConfig(max_message_chars=100, block_ms=50)
    )
    return engine, provider, history, engine.bus


async def run_once(engine: Engine, bus: Bus, *messages: IncomingMessage):
    for m in messages:
        assert await bus.submit(m)
    batch = await bus.read_intake(engine.config.consumer, count=50, block_ms=100)
    return await engine.handle(batch)


async def test_round_trip_through_streams(setup) -> None:
    engine, _provider, history, bus = setup
    replies = []
    async with engine:
        assert engine.running
        await bus.submit(msg("where is my order?"))
        for _ in range(100):
            replies += [r for _id, r in await bus.read_outbound("web", "support", "test", block_ms=100)]
            if replies:
                break
    assert not engine.running
    assert len(replies) == 1
    reply = replies[0]
    assert reply.route is Route.GENERATE and reply.intent == "track_order"
    assert "+1 555 0100" in reply.text and "{{" not in reply.text  # slot filled from facts
    turns = await history.recent(msg("x").conversation, 10)
    assert [t.role for t in turns] == ["user", "bot"]
    assert await bus.pending_count(bus.keys.intake(), "engine") == 0  # acknowledged


async def test_two_quick_messages_answered_in_order_with_history(setup) -> None:
    engine, provider, history, bus = setup
    replies = await run_once(engine, bus, msg("first"), msg("second"), msg("other user", user="bob"))
    assert [r.text.split(" (")[0] for r in replies] == [
        "answer to first",
        "answer to second",
        "answer to other user",
    ]
    # wave 1 batched alice's first and bob's message together; wave 2 saw alice's first turn
    assert [len(b) for b in provider.replies.batches] == [2, 1]
    assert "(history 2)" in replies[1].text and "(history 0)" in replies[0].text
    turns = await history.recent(msg("x").conversation, 10)
    assert [t.text for t in turns if t.role == "user"] == ["first", "second"]


async def test_history_isolated_between_users_and_chats(setup) -> None:
    engine, _p, history, bus = setup
    await run_once(
        engine, bus, msg("alice in c1"), msg("bob in c1", user="bob"), msg("alice in c2", chat="c2")
    )
    a1 = await history.recent(msg("", user="alice", chat="c1").conversation, 10)
    b1 = await history.recent(msg("", user="bob", chat="c1").conversation, 10)
    a2 = await history.recent(msg("", user="alice", chat="c2").conversation, 10)
    assert [t.text for t in a1 if t.role == "user"] == ["alice in c1"]
    assert [t.text for t in b1 if t.role == "user"] == ["bob in c1"]
    assert [t.text for t in a2 if t.role == "user"] == ["alice in c2"]


async def test_escalation_opens_a_ticket_and_mutes_bot(setup) -> None:
    engine, _p, _h, bus = setup  # the hand-off in depth: tests/test_engine_tickets.py
    await run_once(engine, bus, msg("hello"))
    [reply] = await run_once(engine, bus, msg("I want a human [contact_human_agent:0.95]"))
    assert reply.route is Route.ESCALATE
    [ticket] = await engine.tickets.list()
    assert [t.text for t in await engine.tickets.transcript(ticket.id)][:1] == ["hello"]
    [after] = await run_once(engine, bus, msg("are you there?"))
    assert after.route is Route.HUMAN
    await engine.tickets.resolve(ticket.id, "dana")
    [back] = await run_once(engine, bus, msg("thanks"))
    assert back.route is Route.GENERATE


async def test_low_confidence_asks_to_rephrase_then_escalates(setup) -> None:
    engine, _p, _h, bus = setup
    routes = [
        r.route
        for r in [
            *(await run_once(engine, bus, msg("hmm [track_order:0.1]"))),
            *(await run_once(engine, bus, msg("what [oos:0.9]"))),
            *(await run_once(engine, bus, msg("eh [complaint:0.2]"))),
        ]
    ]
    assert routes == [Route.REPHRASE, Route.REPHRASE, Route.ESCALATE]


async def test_confident_message_resets_the_unsure_streak(setup) -> None:
    engine, _p, _h, bus = setup
    texts = ["a [track_order:0.1]", "b [track_order:0.1]", "c [track_order:0.9]", "d [track_order:0.1]"]
    routes = [(await run_once(engine, bus, msg(t)))[0].route for t in texts]
    assert routes == [Route.REPHRASE, Route.REPHRASE, Route.GENERATE, Route.REPHRASE]


async def test_persona_change_applies_to_next_message(setup, redis, keys) -> None:
    engine, _p, _h, bus = setup
    [before] = await run_once(engine, bus, msg("call?"))
    assert "+1 555 0100" in before.text
    store = PersonaStore(redis, keys)
    await store.put(persona(facts={"Customer Support Phone Number": "0800 123 456"}))
    [after] = await run_once(engine, bus, msg("call?"))
    assert "0800 123 456" in after.text
    canned = persona(
        routing=persona().routing.model_copy(
            update={"routes": {"track_order": "canned"}, "canned": {"track_order": "It ships in 2 days."}}
        )
    )
    await store.put(canned)
    [third] = await run_once(engine, bus, msg("where?"))
    assert third.route is Route.CANNED and third.text == "It ships in 2 days."


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x07"])
async def test_empty_message_gets_a_prompt_and_is_stored(setup, text: str) -> None:
    engine, _p, history, bus = setup
    [reply] = await run_once(engine, bus, msg(text))
    assert reply.route is Route.PROMPT and "empty" in reply.text
    assert len(await history.recent(msg("").conversation, 10)) == 2


async def test_oversized_message_is_stored_up_to_the_limit_with_a_note(setup) -> None:
    engine, _p, history, bus = setup
    [reply] = await run_once(engine, bus, msg("word " * 200))
    assert "first 100 characters" in reply.text
    [user, _bot] = await history.recent(msg("").conversation, 10)
    assert 0 < len(user.text) <= 100


async def test_unicode_passes_and_control_characters_go(setup) -> None:
    engine, _p, history, bus = setup
    text = "Où est ma commande 📦? 我的订单在哪里 \u202e\x1b[31m \ud800"
    [reply] = await run_once(engine, bus, msg(text))
    [user, _bot] = await history.recent(msg("").conversation, 10)
    assert "📦" in user.text and "我的订单在哪里" in user.text
    assert "\x1b" not in user.text and "\ud800" not in user.text
    assert reply.route is Route.GENERATE


async def test_missing_model_answers_unavailable_without_losing_the_turn(redis, keys) -> None:
    from core.registry import ModelRegistry

    history = History(redis, keys, max_turns=50, ttl_seconds=3600)
    await PersonaStore(redis, keys).put(persona())
    engine = build_engine(redis, keys, ModelRegistry(Path("/nonexistent")), history=history)
    [reply] = await run_once(engine, engine.bus, msg("hello"))
    assert reply.route is Route.UNAVAILABLE
    assert reply.text == persona().messages.unavailable
    assert next(t.text for t in await history.recent(msg("").conversation, 10)) == "hello"


async def test_unknown_bot_is_answered_politely(setup) -> None:
    engine, _p, _h, bus = setup
    [reply] = await run_once(engine, bus, IncomingMessage("nobot", "web", "c", "u", "hi"))
    assert reply.route is Route.UNAVAILABLE


async def test_two_bots_use_the_models_their_personas_name(redis, keys: Keys) -> None:
    from core.persona import ModelChoice
    from tests.scripted_models import ScriptedIntents, ScriptedReplies

    class TwoModels:
        """Records which model names the engine asked for."""

        def __init__(self) -> None:
            self.replies = {"lm-a": ScriptedReplies(), "lm-b": ScriptedReplies()}
            self.intents = {"intent-a": ScriptedIntents(), "intent-b": ScriptedIntents()}

        def intent_model(self, name: str) -> ScriptedIntents:
            return self.intents[name]

        def reply_model(self, name: str) -> ScriptedReplies:
            return self.replies[name]

    store = PersonaStore(redis, keys)
    await store.put(
        Persona(bot_id="shop", display_name="A", models=ModelChoice(intent="intent-a", lm="lm-a"))
    )
    await store.put(
        Persona(bot_id="bank", display_name="B", models=ModelChoice(intent="intent-b", lm="lm-b"))
    )
    provider = TwoModels()
    engine = build_engine(redis, keys, provider)
    bus = engine.bus
    shop = IncomingMessage(bot_id="shop", platform="web", chat_id="c", user_id="u", text="where is my parcel")
    bank = IncomingMessage(bot_id="bank", platform="web", chat_id="c", user_id="u", text="where is my card")
    replies = await run_once(engine, bus, shop, bank)
    assert [r.route for r in replies] == [Route.GENERATE, Route.GENERATE]
    asked = {name: [req.text for batch in m.batches for req in batch] for name, m in provider.replies.items()}
    assert asked == {"lm-a": ["where is my parcel"], "lm-b": ["where is my card"]}


async def test_small_talk_gets_the_personas_canned_answers(setup) -> None:
    engine, _p, _h, bus = setup
    hello, thanks = await run_once(
        engine, bus, msg("[greeting:0.95] hi"), msg("[thanks:0.9] thanks", user="bob")
    )
    assert hello.route is Route.CANNED and hello.text == "Hello! How can I help you today?"
    assert thanks.route is Route.CANNED and thanks.text.startswith("You're welcome")


async def test_empty_generation_is_routed_to_rephrase_visibly(redis, keys: Keys) -> None:
    class SilentReplies:
        def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
            return ["  " if "silent" in r.text else f"answer to {r.text}" for r in requests]

    await PersonaStore(redis, keys).put(persona())
    engine = build_engine(redis, keys, ScriptedProvider(replies=SilentReplies()))  # type: ignore[arg-type]
    silent, spoken = await run_once(engine, engine.bus, msg("silent please"), msg("hi", user="bob"))
    assert silent.route is Route.REPHRASE and silent.text == persona().messages.rephrase
    assert spoken.route is Route.GENERATE and spoken.text == "answer to hi"
    [_user, bot] = await engine.conversations.history.recent(msg("").conversation, 10)
    assert bot.route == "rephrase"


async def test_a_model_that_fails_to_load_is_not_retried_on_every_batch(
    redis, keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from core.registry import ModelRegistry

    now = [1000.0]
    registry = ModelRegistry(tmp_path, retry_failed_after_s=60, clock=lambda: now[0])
    await PersonaStore(redis, keys).put(persona())
    engine = build_engine(redis, keys, registry)
    with caplog.at_level(logging.ERROR, logger="core.registry"):
        for i in range(3):
            [reply] = await run_once(engine, engine.bus, msg(f"hello {i}"))
            assert reply.route is Route.UNAVAILABLE
        assert len(caplog.records) == 1 and "not retried for 60 s" in caplog.records[0].getMessage()
        now[0] += 61
        await run_once(engine, engine.bus, msg("hello again"))
        assert len(caplog.records) == 2  # tried again once the time was up


async def test_a_failed_batch_is_retried_and_answered_once(redis, keys: Keys) -> None:
    class FlakyIntents(ScriptedIntents):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def predict(self, texts: Sequence[str]) -> list[IntentPrediction]:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("blip")
            return super().predict(texts)

    await PersonaStore(redis, keys).put(persona())
    intents = FlakyIntents()
    config = EngineConfig(block_ms=50, backoff=Backoff(first=0.01, cap=0.05, jitter=0.0))
    engine = build_engine(redis, keys, ScriptedProvider(intents=intents), config=config)
    replies = []
    async with engine:
        await engine.bus.submit(msg("where is my order?"))

        async def answered() -> bool:
            replies.extend(r for _id, r in await engine.bus.read_outbound("web", "support", "t", block_ms=50))
            return bool(replies)

        await wait_for(answered, what="the reply after a retried batch")
    assert intents.calls == 2 and [r.route for r in replies] == [Route.GENERATE]
    assert await engine.bus.pending_count(keys.intake(), "engine") == 0
