"""The engine on continuous batching: replies join the running batch and are committed as
each ends, a user's messages stay in order, and replies are published as they are written.

The reply model is the real ``ContinuousGenerator`` (dense KV-cache scheduler) over a tiny
GPT-2 with seeded random weights and the BPE tokenizer training builds; the classifier is
the scripted one (routing is not what these tests are about).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from benchmarks.engine import Customers
from core.batching import ContinuousGenerator, DenseBackend, ReplyStream
from core.engine import Engine, EngineConfig, Generation
from core.generator import Generator
from core.history import History
from core.keys import Keys
from core.messages import IncomingMessage, Reply
from core.partials import Partial, Partials
from core.persona import GenerationSettings, ModelChoice, Persona, PersonaStore
from core.protocols import GenerationRequest
from core.training.data import BITEXT_CSV, load_examples
from core.training.lm import train_tokenizer
from tests.helpers import wait_for
from tests.scripted_models import ScriptedIntents, build_engine

GREEDY = GenerationSettings(do_sample=False, max_new_tokens=24, repetition_penalty=1.0)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's matrices are too small to split across threads, and two OpenMP
    threads on a busy 2-core machine spin against each other (40x slower steps here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def generator() -> Generator:
    examples = load_examples(BITEXT_CSV)[:160]
    tokenizer = train_tokenizer([t for e in examples for t in (e.text, e.response, e.intent)], 600)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=2,
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return Generator(GPT2LMHeadModel(config).eval(), tokenizer, torch.device("cpu"))


@dataclass
class Recorded:
    """The real continuous generator, noting every request it was given."""

    service: ContinuousGenerator
    requests: list[GenerationRequest] = field(default_factory=list)

    def submit(self, request: GenerationRequest) -> ReplyStream:
        self.requests.append(request)
        return self.service.submit(request)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        return self.service.generate(requests)


@dataclass
class Provider:
    lm: Recorded
    intents: ScriptedIntents = field(default_factory=ScriptedIntents)

    def intent_model(self, name: str) -> ScriptedIntents:
        return self.intents

    def reply_model(self, name: str) -> Recorded:
        return self.lm


@pytest.fixture
async def provider(generator: Generator) -> AsyncIterator[Provider]:
    service = ContinuousGenerator(generator, DenseBackend(generator.model, kv_budget=8192))
    try:
        yield Provider(Recorded(service))
    finally:
        service.close()


def persona(bot: str = "support", max_new_tokens: int = 24, **changes: object) -> Persona:
    return Persona(
        bot_id=bot,
        display_name="Ava",
        facts={"Customer Support Phone Number": "+1 555 0100"},
        generation=GREEDY.model_copy(update={"max_new_tokens": max_new_tokens}),
        models=ModelChoice(lm="tiny"),
        **changes,  # type: ignore[arg-type]
    )


def msg(text: str, user: str = "alice", bot: str = "support", platform: str = "web") -> IncomingMessage:
    return IncomingMessage(bot_id=bot, platform=platform, chat_id=user, user_id=user, text=text)


def engine_for(redis, keys: Keys, provider: Provider, generation: Generation = "continuous") -> Engine:
    config = EngineConfig(block_ms=20, generation=generation, partial_every_s=0.0, defer_wait_s=0.05)
    history = History(redis, keys, max_turns=50, ttl_seconds=3600)
    return build_engine(redis, keys, provider, history=history, config=config)  # type: ignore[arg-type]


def replies_of(engine: Engine, platform: str, bot: str, into: list[Reply], n: int = 1):
    """A condition for ``wait_for``: collects the bot's replies, true once ``n`` came."""

    async def arrived() -> bool:
        into.extend(r for _id, r in await engine.bus.read_outbound(platform, bot, "test", block_ms=20))
        return len(into) >= n

    return arrived


async def test_a_users_second_message_is_written_after_the_first_reply_is_committed(
    redis, keys: Keys, provider: Provider
) -> None:
    await PersonaStore(redis, keys).put(persona())
    engine = engine_for(redis, keys, provider)
    replies: list[Reply] = []
    async with engine:
        first, second, other = msg("where is my order"), msg("and my refund"), msg("hi there", user="bob")
        for m in (first, second, other):  # back to back: in one read, or the second deferred
            await engine.bus.submit(m)
        await wait_for(replies_of(engine, "web", "support", replies, 3), timeout=60, what="three replies")
    alice = [r for r in replies if r.user_id == "alice"]
    assert [r.in_reply_to for r in alice] == [first.message_id, second.message_id]
    [asked] = [r for r in provider.lm.requests if r.text == "and my refund"]
    assert [(t.role, t.text) for t in asked.history] == [
        ("user", "where is my order"),
        ("bot", alice[0].text),
    ]
    assert asked.conversation == second.conversation  # so its first turn's prefix can be reused
    turns = await engine.conversations.history.recent(first.conversation, 10)
    assert [t.text for t in turns] == ["where is my order", alice[0].text, "and my refund", alice[1].text]
    assert len(replies) == 3 and all(r.text for r in replies)


@pytest.mark.parametrize(("generation", "quick_first"), [("continuous", True), ("waves", False)])
async def test_a_message_arriving_mid_generation_joins_the_running_batch(
    redis, keys: Keys, provider: Provider, generation: Generation, quick_first: bool
) -> None:
    """Continuous: the quick reply starts while the long one is being written and is
    committed before it. Waves: the quick one waits for the long one's wave."""
    store = PersonaStore(redis, keys)
    await store.put(persona("long", max_new_tokens=200))
    await store.put(persona("quick", max_new_tokens=2))
    engine = engine_for(redis, keys, provider, generation)
    scheduler = provider.lm.service.backend.scheduler  # type: ignore[attr-defined]
    committed: list[tuple[tuple[int, int], str]] = []  # (outbound entry id, bot)
    async with engine:
        await engine.bus.submit(msg("tell me everything about my order", bot="long"))
        # the long reply is being written: its first partial is out
        await wait_for(lambda: redis.xlen(keys.partials("web", "long")), timeout=60, what="a partial")
        await engine.bus.submit(msg("hi", user="bob", bot="quick"))

        async def answered() -> bool:
            for bot in ("long", "quick"):
                for entry_id, _reply in await engine.bus.read_outbound("web", bot, "test", block_ms=20):
                    ms, seq = str(entry_id).split("-")
                    committed.append(((int(ms), int(seq)), bot))
            return len(committed) == 2

        await wait_for(answered, timeout=120, what="both replies")
    # the order the replies were committed in (Redis stream ids), not the order this loop read them
    order = [bot for _id, bot in sorted(committed)]
    assert order == (["quick", "long"] if quick_first else ["long", "quick"])
    assert scheduler.stats.peak_rows == (2 if quick_first else 1)  # they shared decoding steps


async def follow(partials: Partials, platform: str, bot: str, into: list[Partial]) -> None:
    async for partial in partials.follow(platform, bot, after="0-0", block_ms=20):
        into.append(partial)


async def answer_following_partials(engine: Engine, message: IncomingMessage) -> tuple[Reply, list[Partial]]:
    """Run ``engine`` until it answers ``message`` (a web message to `support`); the reply
    and every partial published for it meanwhile."""
    seen: list[Partial] = []
    replies: list[Reply] = []
    follower = asyncio.create_task(follow(engine.partials, "web", "support", seen))
    try:
        async with engine:
            await engine.bus.submit(message)
            await wait_for(replies_of(engine, "web", "support", replies), timeout=60, what="the reply")
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    [reply] = replies
    return reply, seen


async def test_partials_of_a_web_reply_arrive_in_order_and_lead_to_the_final_text(
    redis, keys: Keys, provider: Provider
) -> None:
    await PersonaStore(redis, keys).put(persona(max_new_tokens=48))
    engine = engine_for(redis, keys, provider)
    message = msg("where is my parcel, it is late")
    reply, seen = await answer_following_partials(engine, message)
    assert len(seen) >= 2, "a 48-token reply published every 8 tokens"
    assert [p.seq for p in seen] == list(range(len(seen)))
    assert all(p.in_reply_to == message.message_id for p in seen)
    assert reply.text.startswith(seen[-1].text)
    # each partial extends the one before, except a last one that corrects a cut-back reply
    assert all(b.text.startswith(a.text) for a, b in itertools.pairwise(seen[:-1]))
    [_user_turn, turn_bot] = await engine.conversations.history.recent(message.conversation, 10)
    assert turn_bot.text == reply.text  # history holds the final text only, once


@pytest.mark.parametrize(("stream", "expected"), [("off", False), ("edit", True)])
async def test_other_platforms_get_partials_only_when_the_persona_streams(
    redis, keys: Keys, provider: Provider, stream: str, expected: bool
) -> None:
    await PersonaStore(redis, keys).put(persona(max_new_tokens=32, stream=stream))
    engine = engine_for(redis, keys, provider)
    replies: list[Reply] = []
    async with engine:
        await engine.bus.submit(msg("where is my parcel", platform="telegram"))
        await wait_for(replies_of(engine, "telegram", "support", replies), timeout=60, what="the reply")
    assert replies[0].text
    assert (await redis.xlen(keys.partials("telegram", "support")) > 0) is expected


async def test_customers_each_get_every_reply_exactly_once_and_in_order(
    redis, keys: Keys, provider: Provider
) -> None:
    """The bounded version of benchmarks/engine.py: 8 customers x 2 messages."""
    await PersonaStore(redis, keys).put(persona(max_new_tokens=16))
    engine = engine_for(redis, keys, provider)
    customers = Customers(engine.bus, engine.partials, "support", questions=["where is my order", "refund?"])
    async with engine:
        result = await asyncio.wait_for(customers.run(8, 2), timeout=180)
    assert result.errors == []
    assert result.replies == 16
    assert result.partials > 0  # the web chat's replies were streamed, and counted
    for user, answered in customers.answered.items():
        assert answered == customers.sent[user]  # each message once, in the order sent
        turns = await engine.conversations.history.recent(msg("", user=user).conversation, 10)
        assert [t.text for t in turns if t.role == "user"] == ["where is my order", "refund?"]
    assert provider.lm.service.backend.scheduler.stats.peak_rows > 1  # type: ignore[attr-defined]


async def test_best_of_candidates_stream_in_the_running_batch_and_one_is_sent(
    redis, keys: Keys, provider: Provider
) -> None:
    from core.best_of import BestOf
    from core.evaluation.judge import train_judge
    from core.prompt import Dialogue

    examples = load_examples(BITEXT_CSV)[:400]
    judge = train_judge([Dialogue(e.text, e.response, e.intent) for e in examples], held_out=0.1)
    recorded = provider.lm
    best = BestOf(recorded, judge)  # type: ignore[arg-type]
    provider.reply_model = lambda name: best  # type: ignore[method-assign]
    sampled = GenerationSettings(max_new_tokens=40, do_sample=True, best_of=2)
    await PersonaStore(redis, keys).put(persona().model_copy(update={"generation": sampled}))
    engine = engine_for(redis, keys, provider)
    message = msg(f"[{judge.labels[0]}:0.9] I need help with this")
    reply, seen = await answer_following_partials(engine, message)
    assert len(recorded.requests) == 2  # both candidates went into the running batch
    assert seen and reply.text.startswith(seen[-1].text)  # partials, then the final text last
    [_user_turn, turn_bot] = await engine.conversations.history.recent(message.conversation, 10)
    assert turn_bot.text == reply.text
