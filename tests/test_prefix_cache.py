"""History prefix reuse: a conversation's next turn encodes only what is new, with exactly
the greedy tokens it would write without the cache; a forgotten user or an edited
persona never gets an old prefix; the cache stays within its token budget (LRU).

Same tiny seeded GPT-2 and Bitext tokenizer as tests/test_batching.py.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import torch

from core.batching import ContinuousGenerator, ContinuousScheduler, Job
from core.batching.prefix_cache import PrefixCache, PrefixKey
from core.batching.scheduler import Completion
from core.bus import Bus
from core.generator import Generator
from core.history import Turn
from core.keys import Keys
from core.messages import ConversationKey
from core.persona import GenerationSettings
from core.protocols import GenerationRequest
from core.training.data import BITEXT_CSV, load_examples
from core.training.lm import train_tokenizer
from tests.helpers import wait_for
from tests.test_batching import NO_STOP, prompts, reference, tiny_model

ANN = ConversationKey("support", "web", "chat-1", "ann")
BOB = ConversationKey("support", "web", "chat-2", "bob")
KEY = PrefixKey(ANN.parts(), "persona-a")
SETTINGS = GenerationSettings(do_sample=False, max_new_tokens=10, repetition_penalty=1.0, history_turns=8)


@pytest.fixture(scope="module")
def tokenizer():
    examples = load_examples(BITEXT_CSV)[:160]
    return train_tokenizer([t for e in examples for t in (e.text, e.response, e.intent)], 600)


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(len(tokenizer))


QUESTIONS = ["where is my order", "I want to cancel it", "how long does a refund take", "thanks, bye"]


def finish(scheduler: ContinuousScheduler, job: Job) -> Completion:
    done: list[Completion] = []
    job.on_finish = done.append
    scheduler.submit(job)
    scheduler.run_until_idle()
    return done[0]


# ---------------------------------------------------------------- exact reuse (scheduler)


def test_next_turn_encodes_only_what_is_new_and_writes_the_same_tokens(model):
    first, extra = prompts(model.config.vocab_size, (20, 7))
    scheduler = ContinuousScheduler(model, prefix_cache=PrefixCache(4096))
    reply = finish(scheduler, Job(first, 10, NO_STOP, prefix_key=KEY)).tokens
    assert reply == reference(model, first, 10)
    before = scheduler.stats.encoded_tokens

    # the next turn's prompt: the last prompt, the reply, then the new message
    second = first + reply + extra
    out = finish(scheduler, Job(second, 10, NO_STOP, prefix_key=KEY))
    assert out.tokens == reference(model, second, 10)  # token for token
    cached = len(first) + len(reply) - 1  # the reply's last token was never fed back
    assert scheduler.stats.reused_tokens == cached
    assert scheduler.stats.encoded_tokens - before == len(second) - cached


def test_reuse_next_to_other_rows_keeps_every_row_exact(model):
    p = prompts(model.config.vocab_size, (12, 30, 5, 9))
    scheduler = ContinuousScheduler(model, prefix_cache=PrefixCache(4096), prefill_chunk=16)
    reply = finish(scheduler, Job(p[0], 8, NO_STOP, prefix_key=KEY)).tokens
    follow_up = p[0] + reply + p[2]
    jobs = [Job(follow_up, 8, NO_STOP, prefix_key=KEY), Job(p[1], 8, NO_STOP), Job(p[3], 8, NO_STOP)]
    done: dict[int, Completion] = {}
    for i, job in enumerate(jobs):
        job.on_finish = lambda c, i=i: done.__setitem__(i, c)
        scheduler.submit(job)
    scheduler.run_until_idle()
    assert [done[i].tokens for i in range(3)] == [reference(model, j.prompt_ids, 8) for j in jobs]
    assert jobs[0].reused > 0 and scheduler.stats.peak_rows == 3


def test_several_conversations_resume_together_and_stay_exact(model):
    firsts = prompts(model.config.vocab_size, (10, 25, 6))
    extras = prompts(model.config.vocab_size, (3, 9, 5))
    scheduler = ContinuousScheduler(model, prefix_cache=PrefixCache(4096))
    keys = [PrefixKey(("support", "web", f"c{i}", f"u{i}"), "p") for i in range(3)]
    replies = [
        finish(scheduler, Job(p, 6, NO_STOP, prefix_key=k)).tokens for p, k in zip(firsts, keys, strict=True)
    ]
    before = scheduler.stats.encoded_tokens
    seconds = [p + r + e for p, r, e in zip(firsts, replies, extras, strict=True)]
    [fresh] = prompts(model.config.vocab_size, (7,))
    jobs = [Job(q, 6, NO_STOP, prefix_key=k) for q, k in zip(seconds, keys, strict=True)]
    jobs.append(Job(fresh, 6, NO_STOP))
    done: dict[int, Completion] = {}
    for i, job in enumerate(jobs):
        job.on_finish = lambda c, i=i: done.__setitem__(i, c)
        scheduler.submit(job)
    scheduler.run_until_idle()
    assert [done[i].tokens for i in range(4)] == [reference(model, j.prompt_ids, 6) for j in jobs]
    tail = max(e for e in (3, 9, 5)) + 1  # the reply's last token was never fed back
    # one batched forward: every resumed row fed the longest tail, re-encoding a little of its prefix
    assert [j.reused for j in jobs[:3]] == [len(q) - tail for q in seconds]
    assert scheduler.stats.encoded_tokens - before == 3 * tail + len(fresh)


# ---------------------------------------------------------------- the service, turn by turn


def converse(service: ContinuousGenerator, style: str = "Be brief.", conversation=ANN) -> list[str]:
    history: list[Turn] = []
    replies = []
    for question in QUESTIONS:
        request = GenerationRequest(
            text=question, style=style, history=tuple(history), settings=SETTINGS, conversation=conversation
        )
        reply = service.submit(request).result(timeout=120)
        replies.append(reply)
        history += [Turn("user", question), Turn("bot", reply)]
    return replies


def dense(gen: Generator, prefix_budget: int) -> ContinuousGenerator:
    return ContinuousGenerator.start(gen, backend="dense", prefix_budget=prefix_budget)


def test_a_conversation_reads_the_same_with_and_without_the_cache(model, tokenizer):
    gen = Generator(model, tokenizer, torch.device("cpu"))
    with dense(gen, 0) as plain:
        expected = converse(plain)
        encoded_plain = plain.backend.scheduler.stats.encoded_tokens  # type: ignore[attr-defined]
    with dense(gen, 4096) as cached:
        assert converse(cached) == expected
        stats = cached.backend.scheduler.stats  # type: ignore[attr-defined]
    assert stats.reused_tokens > 0
    assert stats.encoded_tokens + stats.reused_tokens == encoded_plain  # every prompt token once
    assert stats.encoded_tokens < encoded_plain / 2


def test_forget_drops_the_users_prefix_and_keeps_others(model, tokenizer):
    gen = Generator(model, tokenizer, torch.device("cpu"))
    with dense(gen, 4096) as service:
        prefixes = service.backend.prefixes  # type: ignore[attr-defined]
        converse(service, conversation=ANN)
        converse(service, conversation=BOB)
        assert ANN.parts() in prefixes and BOB.parts() in prefixes
        assert service.forget("web", "ann") == 1
        assert ANN.parts() not in prefixes and BOB.parts() in prefixes
        reused = prefixes.stats.reused_tokens
        request = GenerationRequest(text=QUESTIONS[0], style="Be brief.", settings=SETTINGS, conversation=ANN)
        service.submit(request).result(timeout=120)
        segment = service._persona_tokens(gen.prompt_for(request, SETTINGS.max_new_tokens)[0])
        assert segment > 0  # only the persona's own segment was served, nothing of Ann's
        assert prefixes.stats.reused_tokens - reused == segment


def test_a_new_conversation_starts_from_its_personas_segment_encoded_once(model, tokenizer):
    gen = Generator(model, tokenizer, torch.device("cpu"))
    first = GenerationRequest(text=QUESTIONS[0], style="Be brief.", settings=SETTINGS, conversation=ANN)
    other = GenerationRequest(text=QUESTIONS[2], style="Be brief.", settings=SETTINGS, conversation=BOB)
    with dense(gen, 0) as plain:
        expected = [plain.submit(r).result(timeout=120) for r in (first, other)]
    with dense(gen, 4096) as cached:
        assert [cached.submit(r).result(timeout=120) for r in (first, other)] == expected
        segment = cached._persona_tokens(gen.prompt_for(other, SETTINGS.max_new_tokens)[0])
        stats = cached.backend.scheduler.stats  # type: ignore[attr-defined]
        assert segment > 5 and stats.reused_tokens == segment  # Bob's first prompt skipped it
        restyled = GenerationRequest(text=QUESTIONS[1], style="Be warm.", settings=SETTINGS, conversation=BOB)
        cached.submit(restyled).result(timeout=120)  # another persona: nothing of this one serves it
        assert stats.reused_tokens == segment


async def test_history_forget_in_another_process_reaches_the_engines_cache(
    model, tokenizer, redis: aioredis.Redis, keys: Keys
):
    """`chatbot history forget` runs in its own process: the bus tells every engine."""
    gen = Generator(model, tokenizer, torch.device("cpu"))
    with dense(gen, 4096) as service:
        prefixes = service.backend.prefixes  # type: ignore[attr-defined]
        await asyncio.to_thread(converse, service)
        assert ANN.parts() in prefixes
        engine_bus, cli_bus = Bus(redis, keys), Bus(redis, keys)  # two processes' buses
        follower = asyncio.create_task(engine_bus.follow_forgets(service.forget))
        channel = keys.forget_channel()
        await wait_for(lambda: _subscribers(redis, channel), what="the engine subscribed")
        await cli_bus.forget_user("web", "ann")
        await wait_for(lambda: ANN.parts() not in prefixes, what="the prefix dropped")
        follower.cancel()


async def _subscribers(redis: aioredis.Redis, channel: str) -> bool:
    return bool((await redis.pubsub_numsub(channel))[0][1])


def test_a_reply_written_during_forget_is_not_cached(model):
    cache = PrefixCache(4096)
    scheduler = ContinuousScheduler(model, prefix_cache=cache)
    [p] = prompts(model.config.vocab_size, (9,))
    job = Job(p, 6, NO_STOP, prefix_key=KEY)
    job.on_token = lambda _t: cache.forget("web", "ann") if len(job.tokens) == 2 else None
    finish(scheduler, job)
    assert len(job.tokens) == 6 and ANN.parts() not in cache  # it finished, but was not stored


def test_a_persona_change_never_reuses_the_old_prefix(model, tokenizer):
    gen = Generator(model, tokenizer, torch.device("cpu"))
    with dense(gen, 4096) as service:
        prefixes = service.backend.prefixes  # type: ignore[attr-defined]
        converse(service, style="Be brief.")
        hits = prefixes.stats.hits
        # the same conversation, the persona's style edited: same history, new prompt head
        changed = converse(service, style="Be brief and kind.")
        assert prefixes.stats.dropped == 1  # the old entry went at the first lookup
        assert prefixes.stats.hits == hits + len(QUESTIONS) - 1  # only its own new turns
    with dense(gen, 0) as plain:
        assert changed == converse(plain, style="Be brief and kind.")


# ---------------------------------------------------------------- memory bound, LRU


def kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, 2, n, 4), torch.zeros(1, 2, n, 4))]


def key(user: str, persona: str = "p") -> PrefixKey:
    return PrefixKey(("support", "web", "c", user), persona)


def test_the_cache_stays_within_its_budget_evicting_the_least_recently_used():
    cache = PrefixCache(budget=10)
    assert cache.store(key("a"), [1, 2, 3, 4], kv(4), since=cache.epoch)
    assert cache.store(key("b"), [5, 6, 7, 8], kv(4), since=cache.epoch)
    assert cache.lookup(key("a"), [1, 2, 3, 9])[0] == 3  # a is now the most recent
    assert cache.store(key("c"), [9, 9, 9, 9], kv(4), since=cache.epoch)
    assert key("b").conversation not in cache and key("a").conversation in cache
    assert cache.held == 8 <= cache.budget and cache.stats.evicted == 1
    assert not cache.store(key("d"), list(range(11)), kv(11), since=cache.epoch)  # larger than all of it
    assert cache.held == 8


def test_lookup_leaves_the_last_prompt_token_to_encode_and_checks_the_persona():
    cache = PrefixCache(budget=100)
    cache.store(key("a"), [1, 2, 3, 4, 5], kv(5), since=cache.epoch)
    n, layers = cache.lookup(key("a"), [1, 2, 3])
    assert n == 2 and layers[0][0].shape == (1, 2, 2, 4)  # its logits choose the first reply token
    assert cache.lookup(key("a"), [7, 2, 3])[0] == 0
    assert cache.lookup(key("a", persona="q"), [1, 2, 3, 4, 5, 6])[0] == 0
    assert len(cache) == 0  # the other persona's entry was dropped, not kept beside it


def test_a_long_conversation_set_stays_within_the_budget_in_the_scheduler(model):
    cache = PrefixCache(budget=60)
    scheduler = ContinuousScheduler(model, prefix_cache=cache)
    for i, p in enumerate(prompts(model.config.vocab_size, (15, 22, 18, 25, 9))):
        finish(scheduler, Job(p, 6, NO_STOP, prefix_key=key(f"user-{i}")))
        assert cache.held <= cache.budget
    assert cache.stats.evicted > 0
    entries = list(cache._entries.values())
    assert sum(len(e.tokens) for e in entries) == cache.held
    # each entry owns its keys/values: no view pins the running batch's whole buffer
    for entry in entries:
        keys = entry.kv[0][0]
        assert keys.shape[-2] == len(entry.tokens)
        assert keys.untyped_storage().nbytes() == keys.numel() * keys.element_size()
