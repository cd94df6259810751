"""Continuous batching: exact greedy tokens, per-row sampling, join/leave, KV budget,
streaming, the library backend and int8 quantisation.

The model is a tiny GPT-2 with seeded random weights (a wide initialisation so greedy
decoding does not repeat one token) and the byte-level BPE tokenizer training builds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.pytorch_utils import Conv1D

from core.batching import (
    Completion,
    ContinuousGenerator,
    ContinuousScheduler,
    DenseBackend,
    Job,
    LibraryBackend,
    Sampling,
    pick_backend,
)
from core.batching.backends import CPU_MAX_ROWS
from core.batching.sampling import choose_tokens
from core.errors import ConfigError
from core.generator import Generator
from core.history import Turn
from core.persona import GenerationSettings
from core.protocols import GenerationRequest
from core.quantize import conv1d_to_linear
from core.training.data import BITEXT_CSV, load_examples
from core.training.lm import train_tokenizer

GREEDY = GenerationSettings(do_sample=False, max_new_tokens=12, repetition_penalty=1.0)
NO_STOP: frozenset[int] = frozenset()


@pytest.fixture(scope="module")
def tokenizer():
    examples = load_examples(BITEXT_CSV)[:160]
    return train_tokenizer([t for e in examples for t in (e.text, e.response, e.intent)], 600)


def tiny_model(vocab: int, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab, n_positions=128, n_embd=64, n_layer=2, n_head=2, initializer_range=0.3
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT2LMHeadModel:
    return tiny_model(len(tokenizer))


def prompts(vocab: int, lengths: tuple[int, ...] = (5, 23, 9, 40, 2)) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]


def reference(model, prompt: list[int], max_new: int, **kwargs) -> list[int]:
    """What one unbatched ``model.generate`` call writes (no stop token)."""
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_new,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        **kwargs,
    )
    return out[0, len(prompt) :].tolist()


def run(scheduler: ContinuousScheduler, jobs: list[Job]) -> list[Completion]:
    done: dict[int, Completion] = {}
    for i, job in enumerate(jobs):
        job.on_finish = lambda c, i=i: done.__setitem__(i, c)
        scheduler.submit(job)
    scheduler.run_until_idle()
    return [done[i] for i in range(len(jobs))]


# ---------------------------------------------------------------- exact greedy tokens


def test_greedy_tokens_equal_single_request_generate(model):
    ps = prompts(model.config.vocab_size)
    scheduler = ContinuousScheduler(
        model, kv_budget=4096, prefill_chunk=16
    )  # the 23/40-token prompts take chunks
    out = run(scheduler, [Job(p, 12, NO_STOP) for p in ps])
    assert [c.tokens for c in out] == [reference(model, p, 12) for p in ps]
    assert scheduler.stats.peak_rows == len(ps)  # they really ran as one batch
    assert all(not c.stopped and c.error is None for c in out)


def test_the_written_out_gpt2_step_writes_the_tokens_of_the_models_own_forward(model):
    ps = prompts(model.config.vocab_size)
    fast = ContinuousScheduler(model, kv_budget=4096)
    generic = ContinuousScheduler(model, kv_budget=4096)
    generic._gpt2_step = False  # what any other causal LM runs: transformers' forward
    assert fast._gpt2_step
    out = [[c.tokens for c in run(s, [Job(p, 12, NO_STOP) for p in ps])] for s in (fast, generic)]
    assert out[0] == out[1] == [reference(model, p, 12) for p in ps]


def test_repetition_penalty_matches_generate(model):
    ps = prompts(model.config.vocab_size, (7, 19))
    jobs = [Job(p, 10, NO_STOP, Sampling(repetition_penalty=1.5)) for p in ps]
    out = run(ContinuousScheduler(model), jobs)
    assert [c.tokens for c in out] == [reference(model, p, 10, repetition_penalty=1.5) for p in ps]


def test_service_replies_equal_generator_replies(model, tokenizer):
    gen = Generator(model, tokenizer, torch.device("cpu"))
    requests = [
        GenerationRequest(text="I want to cancel my order", intent="cancel_order", settings=GREEDY),
        GenerationRequest(
            text="how do I get a refund for the shoes I bought last week, they do not fit",
            intent="get_refund",
            style="Be friendly.",
            settings=GREEDY,
            history=(Turn("user", "hello"), Turn("bot", "Hi! How can I help?")),
        ),
        GenerationRequest(text="invoice 12345678", intent="check_invoice", settings=GREEDY),
    ]
    with ContinuousGenerator.start(gen, backend="dense") as service:
        replies = service.generate(requests)
    assert replies == [gen.generate([r])[0] for r in requests]
    assert any(replies)


# ---------------------------------------------------------------- sampling per row


def test_sampling_steps_match_transformers_warpers():
    torch.manual_seed(3)
    logits = torch.randn(2, 50) * 3
    history = torch.tensor([[1, 4, 9, 1], [2, 4, 30, 2]])  # each row padded with its first token
    from core.batching.sampling import _best_k, _top_p, penalise_repeats

    expected = RepetitionPenaltyLogitsProcessor(1.3)(history[:, :3], logits.clone())
    assert torch.equal(penalise_repeats(logits, history, torch.tensor([1.3, 1.3])), expected)
    scores, columns = _best_k(logits, torch.tensor([7, 7]))  # the 7 best of each row, in place
    spread = torch.full_like(logits, float("-inf")).scatter(1, columns, scores)
    assert torch.equal(spread, TopKLogitsWarper(7)(history, logits.clone()))
    assert torch.equal(
        _top_p(logits, torch.tensor([0.6, 0.6])), TopPLogitsWarper(0.6)(history, logits.clone())
    )
    mixed, _ = _best_k(logits, torch.tensor([3, 7]))  # each row cut to its own k
    assert int(torch.isfinite(mixed[0]).sum()) == 3 and int(torch.isfinite(mixed[1]).sum()) == 7


def test_top_k_one_sampling_is_greedy():
    logits = torch.randn(3, 40)
    settings = [Sampling(do_sample=True, temperature=0.7, top_k=1, seed=s) for s in range(3)]
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    assert (
        choose_tokens(logits, settings, torch.zeros(3, 1, dtype=torch.long), gens)
        == logits.argmax(-1).tolist()
    )


def test_different_sampling_settings_share_one_batch(model):
    p = prompts(model.config.vocab_size, (6, 15, 11))
    settings = [
        Sampling(),  # greedy
        Sampling(do_sample=True, temperature=0.8, top_k=20, seed=11),
        Sampling(do_sample=True, temperature=1.2, top_p=0.5, repetition_penalty=1.3, seed=12),
    ]
    scheduler = ContinuousScheduler(model)
    mixed = run(scheduler, [Job(q, 12, NO_STOP, s) for q, s in zip(p, settings, strict=True)])
    assert scheduler.stats.peak_rows == 3
    assert mixed[0].tokens == reference(model, p[0], 12)
    # a seeded sampled row draws the same tokens alone as next to other personas
    for q, s, together in zip(p[1:], settings[1:], mixed[1:], strict=True):
        [alone] = run(ContinuousScheduler(model), [Job(q, 12, NO_STOP, s)])
        assert together.tokens == alone.tokens
    assert mixed[1].tokens != mixed[0].tokens  # sampling did something


# ---------------------------------------------------------------- join and leave


def test_a_request_joins_mid_batch_and_others_leave_early(model):
    p = prompts(model.config.vocab_size, (8, 14, 30))
    refs = [reference(model, q, 12) for q in p]
    stop = next(t for k, t in enumerate(refs[1]) if k >= 8 and t not in refs[1][:k])
    scheduler = ContinuousScheduler(model, prefill_chunk=10)
    finished_at: dict[str, int] = {}
    joined_with: list[list[Job]] = []

    def finish(name: str, store: dict[str, Completion]):
        def on_finish(c: Completion) -> None:
            store[name] = c
            finished_at[name] = scheduler.stats.steps

        return on_finish

    results: dict[str, Completion] = {}
    short = Job(p[0], 6, NO_STOP, on_finish=finish("short", results))  # leaves at its limit
    stopper = Job(
        p[1], 12, frozenset({stop}), on_finish=finish("stopper", results)
    )  # leaves at its stop token
    scheduler.submit(short)
    scheduler.submit(stopper)
    while not stopper.tokens:  # its 14-token prompt takes two prefill chunks
        scheduler.step()
    assert len(scheduler.running) == 2
    late = Job(p[2], 12, NO_STOP, on_finish=finish("late", results))
    late.on_token = lambda _t: joined_with.append(list(scheduler.running))
    scheduler.submit(late)  # a 30-token prompt, prefilled in 3 chunks while the others decode
    scheduler.run_until_idle()

    assert results["short"].tokens == refs[0][:6] and not results["short"].stopped
    assert results["stopper"].tokens == refs[1][: refs[1].index(stop)] and results["stopper"].stopped
    assert results["late"].tokens == refs[2]
    assert stopper in joined_with[0]  # the late one joined a batch that was running
    assert finished_at["short"] < finished_at["stopper"] < finished_at["late"]
    assert scheduler.cache.rows == 0 and not scheduler.has_work()


def test_a_broken_reader_does_not_stop_the_other_rows(model):
    p = prompts(model.config.vocab_size, (6, 9))

    def explode(_token: int) -> None:
        raise ValueError("reader gone")

    broken = Job(p[0], 5, NO_STOP, on_token=explode)
    out = run(ContinuousScheduler(model), [broken, Job(p[1], 5, NO_STOP)])
    assert [c.tokens for c in out] == [reference(model, q, 5) for q in p]


# ---------------------------------------------------------------- KV budget


def test_kv_budget_makes_requests_wait_not_fail(model):
    p = prompts(model.config.vocab_size, (10, 10, 10, 10, 10))
    budget = 2 * (10 + 12 - 1)  # room for two rows of their longest possible length
    scheduler = ContinuousScheduler(model, kv_budget=budget)
    waited = []
    done: dict[int, Completion] = {}
    for i, q in enumerate(p):
        scheduler.submit(Job(q, 12, NO_STOP, on_finish=lambda c, i=i: done.__setitem__(i, c)))
    while scheduler.has_work():
        scheduler.step()
        waited.append(len(scheduler.waiting))
    assert max(waited) > 0  # some requests had to wait
    assert scheduler.stats.peak_tokens <= budget and scheduler.stats.peak_rows == 2
    assert [done[i].tokens for i in range(5)] == [reference(model, q, 12) for q in p]


def test_a_row_cap_makes_requests_wait_for_a_row_and_they_come_out_right(model):
    p = prompts(model.config.vocab_size, (6, 9, 4, 12, 7))
    scheduler = ContinuousScheduler(model, kv_budget=1 << 20, max_rows=2)
    out = run(scheduler, [Job(q, 12, NO_STOP) for q in p])
    assert scheduler.stats.peak_rows == 2  # the budget had room for all five
    assert [c.tokens for c in out] == [reference(model, q, 12) for q in p]


def test_a_cpu_batch_is_capped_at_the_rows_that_still_pay(model):
    backend = DenseBackend(model)
    try:
        assert backend.scheduler.max_rows == CPU_MAX_ROWS
    finally:
        backend.close()
    with pytest.raises(ConfigError):
        ContinuousScheduler(model, max_rows=0)


def test_slots_left_by_finished_rows_count_against_the_budget(model):
    p = prompts(model.config.vocab_size, (10, 10, 10, 10, 10, 10))
    budget = 4 * (10 + 12 - 1)  # four rows of their longest possible length
    scheduler = ContinuousScheduler(model, kv_budget=budget)
    done: dict[int, Completion] = {}
    for i, q in enumerate(p[:4]):  # two leave after 3 tokens, freeing two of four slots
        scheduler.submit(Job(q, 3 if i < 2 else 12, NO_STOP, on_finish=lambda c, i=i: done.__setitem__(i, c)))
    while len(done) < 2:
        scheduler.step()
    assert scheduler.cache.slots == 4 and scheduler.cache.rows == 2
    for i, q in enumerate(p[4:], start=4):  # two more join while two old rows still run
        scheduler.submit(Job(q, 12, NO_STOP, on_finish=lambda c, i=i: done.__setitem__(i, c)))
    scheduler.run_until_idle()
    assert scheduler.stats.peak_tokens <= budget  # idle slots + new prompts never exceed it
    assert [done[i].tokens for i in range(6)] == [
        reference(model, q, 3 if i < 2 else 12) for i, q in enumerate(p)
    ]


def test_a_request_that_can_never_fit_is_refused_in_one_line(model):
    scheduler = ContinuousScheduler(model, kv_budget=20)
    with pytest.raises(ConfigError, match="needs 29 KV-cache tokens; the budget is 20"):
        scheduler.submit(Job(list(range(10)), 20, NO_STOP))
    with pytest.raises(ConfigError, match="does not fit the model's 128-token context"):
        ContinuousScheduler(model).submit(Job(list(range(100)), 29, NO_STOP))


# ---------------------------------------------------------------- streaming


async def test_stream_yields_exactly_the_final_text(model, tokenizer):
    gen = Generator(model, tokenizer, torch.device("cpu"))
    settings = GREEDY.model_copy(update={"max_new_tokens": 20})
    request = GenerationRequest(
        text="where is my parcel, it is late", intent="track_order", settings=settings
    )
    with ContinuousGenerator.start(gen, backend="dense") as service:
        stream = service.submit(request)
        seen = [text async for text in stream]
        final = await stream.text()
    assert seen and seen[-1] == final
    assert final == gen.generate([request])[0]  # the non-streamed reply
    assert 0 < len(stream.tokens) <= 20


# ---------------------------------------------------------------- backends


def test_library_backend_greedy_tokens_and_stream(model):
    p = prompts(model.config.vocab_size, (5, 17, 9))
    backend = LibraryBackend(model, kv_budget=2048)
    streamed: dict[int, list[int]] = {}
    done: dict[int, Completion] = {}
    try:
        for i, q in enumerate(p):
            backend.submit(
                Job(
                    q,
                    10,
                    NO_STOP,
                    on_token=lambda t, i=i: streamed.setdefault(i, []).append(t),
                    on_finish=lambda c, i=i: done.__setitem__(i, c),
                )
            )
        for i in range(len(p)):
            _wait(lambda i=i: i in done)
    finally:
        backend.close()
    assert [done[i].tokens for i in range(3)] == [reference(model, q, 10) for q in p]
    assert [streamed[i] for i in range(3)] == [done[i].tokens for i in range(3)]


def _wait(condition, timeout: float = 60.0) -> None:
    """Block until ``condition`` holds (a bound on a background thread, not a measurement)."""
    import threading

    event = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        event.wait(0.05)
    raise AssertionError("backend did not finish in time")


class BrokenLM(torch.nn.Module):
    """A causal LM whose every forward fails, as an out-of-memory would."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(10, 4)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.wte

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, **kwargs):
        raise RuntimeError("simulated out of memory")


def test_a_failing_model_fails_the_replies_instead_of_hanging():
    backend = DenseBackend(BrokenLM())
    done: list[Completion] = []
    try:
        for _ in range(2):  # the worker survives the first failure and reports the second too
            backend.submit(Job([1, 2, 3], 4, NO_STOP, on_finish=done.append))
            _wait(lambda n=len(done): len(done) > n)
    finally:
        backend.close()
    assert [str(c.error) for c in done] == ["simulated out of memory"] * 2


def test_slot_cache_writes_each_row_at_its_length_and_fills_gaps_with_the_last_row():
    from core.batching.kv_cache import SlotKVCache

    cache = SlotKVCache()
    rows = torch.randn(3, 2, 5, 4)  # three prefilled rows of 5, 2 and 3 tokens, right-aligned
    cache.add_rows([(rows, -rows)], [0, 1, 2], [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]], capacity=7)
    layer = cache.cache.layers[0]
    assert (cache.slots, cache.capacity, cache.lengths) == (3, 7, [5, 2, 3])
    positions, mask = cache.step(torch.tensor([[11], [12], [13]]))
    assert positions.flatten().tolist() == [5, 2, 3] and mask.shape == (3, 1, 1, 6)
    assert mask[:, 0, 0].sum(dim=1).tolist() == [6, 3, 4]  # each row sees its own tokens + the new one
    step = torch.randn(3, 2, 1, 4)
    keys, values = layer.update(step, -step)
    assert keys.shape == (3, 2, 6, 4) and torch.equal(keys[1, :, :2], rows[1, :, 3:])
    assert torch.equal(keys[1, :, 2], step[1, :, 0]) and torch.equal(values[0, :, 5], -step[0, :, 0])
    assert cache.history().tolist() == [[1, 2, 3, 4, 5, 11], [6, 7, 12, 6, 6, 6], [8, 9, 10, 13, 8, 8]]
    assert cache.drop_rows([0]) == [(2, 0)]  # the last row moves into the gap, keys and all
    assert cache.lengths == [4, 3] and torch.equal(layer.keys[0, :, :3], rows[2, :, 2:])
    assert torch.equal(layer.keys[0, :, 3], step[2, :, 0]) and layer.keys.shape == (2, 2, 4, 4)
    cache.add_rows([(rows, -rows)], [0], [[1, 2, 3, 4, 5]], capacity=9)  # longer: fresh buffers
    keys = cache.cache.layers[0].keys
    assert (cache.slots, cache.capacity, keys.shape) == (3, 9, (3, 2, 5, 4))
    assert torch.equal(keys[0, :, :3], rows[2, :, 2:]) and torch.equal(keys[1, :, 2], step[1, :, 0])
    assert torch.equal(keys[2], rows[0])  # the running rows were copied over, the new one added
    assert cache.history().tolist() == [[8, 9, 10, 13, 8], [6, 7, 12, 6, 6], [1, 2, 3, 4, 5]]


def test_decode_attention_matches_sdpa_for_one_query_and_defers_to_it_otherwise():
    from core.batching.attention import decode_attention

    torch.manual_seed(2)
    keys, values = torch.randn(3, 2, 9, 8), torch.randn(3, 2, 9, 8)
    visible = torch.arange(9)[None, :] < torch.tensor([9, 4, 6])[:, None]  # rows of 9, 4, 6 tokens
    mask = visible[:, None, None, :]  # (3, 1, 1, 9)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    module = torch.nn.Module()
    for q_len in (1, 3):  # a decoding step, and a prefill-like call that goes to SDPA
        query = torch.randn(3, 2, q_len, 8)
        expected = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
        for m in (mask, additive):
            out, _ = decode_attention(module, query, keys, values, m, is_causal=False)
            assert out.shape == (3, q_len, 2, 8)
            assert torch.allclose(out.transpose(1, 2), expected, atol=1e-6)


def test_pick_backend_by_device(model):
    cpu = pick_backend("cpu", model)
    try:
        assert isinstance(cpu, DenseBackend)
    finally:
        cpu.close()
    cuda = pick_backend("cuda", model, kv_budget=2048)  # the choice only; this machine runs it on CPU
    try:
        assert isinstance(cuda, LibraryBackend)
    finally:
        cuda.close()


# ---------------------------------------------------------------- int8


def test_conv1d_becomes_an_equivalent_linear(tokenizer):
    model = tiny_model(len(tokenizer), seed=4)
    ids = torch.tensor([prompts(model.config.vocab_size, (12,))[0]])
    before = model(ids).logits
    assert conv1d_to_linear(model) == 2 * 4  # c_attn, c_proj, c_fc, mlp c_proj per layer
    assert torch.allclose(model(ids).logits, before, atol=1e-5)


def test_quantised_model_loads_and_answers(tokenizer, tmp_path: Path):
    folder = tmp_path / "lm"
    tiny_model(len(tokenizer), seed=5).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    request = GenerationRequest(text="I need to change my address", intent="change_address", settings=GREEDY)
    with ContinuousGenerator.from_pretrained(folder, device="cpu", backend="dense", int8=True) as service:
        modules = list(service.generator.model.modules())
        [reply] = service.generate([request])
    int8 = [m for m in modules if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(int8) == 2 * 4 + 1  # every projection of both blocks, and the output head
    assert not any(isinstance(m, (Conv1D, torch.nn.Linear)) for m in modules)
    assert isinstance(reply, str) and reply.strip()


def test_top_k_rows_sample_from_the_same_distribution_on_their_k_columns():
    from core.batching.sampling import _best_k, _top_p

    torch.manual_seed(5)
    logits = torch.randn(3, 300) * 2
    top_k, top_p = torch.tensor([50, 7, 1]), torch.tensor([0.9, 0.9, 1.0])
    history = torch.zeros(1, 1, dtype=torch.long)
    warped = torch.stack(
        [
            TopKLogitsWarper(int(k))(history, row[None].clone())[0]
            for k, row in zip(top_k, logits, strict=True)
        ]
    )
    full = _top_p(warped, top_p).softmax(-1)  # (3, 300), transformers' top-k, then top-p
    scores, columns = _best_k(logits, top_k)
    narrow = _top_p(scores, top_p).softmax(-1)  # (3, 50)
    spread = torch.zeros_like(full).scatter_add(1, columns, narrow)
    assert torch.allclose(spread, full, atol=1e-6)
