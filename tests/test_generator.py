"""The reply generator: batching, prompt fitting, output cleaning, load errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ModelMissing
from core.generator import Generator, clean_reply
from core.history import Turn
from core.persona import GenerationSettings
from core.prompt import END, build_prompt_ids
from core.protocols import GenerationRequest
from core.training.lm import train_lm
from tests.test_train_lm import tiny_config

GREEDY = GenerationSettings(do_sample=False, max_new_tokens=24, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> Generator:
    out = tmp_path_factory.mktemp("gen") / "tiny"
    train_lm(tiny_config(out, max_steps=30, eval_samples=0))
    return Generator.from_pretrained(out, device="cpu")


def _requests(settings: GenerationSettings = GREEDY) -> list[GenerationRequest]:
    return [
        GenerationRequest(text="I want to cancel my order", intent="cancel_order", settings=settings),
        GenerationRequest(
            text="how do I get a refund for the shoes I bought last week, they do not fit",
            intent="get_refund",
            style="Be friendly.",
            settings=settings,
            history=(Turn("user", "hello"), Turn("bot", "Hi! How can I help?")),
        ),
        GenerationRequest(text="invoice", intent="check_invoice", settings=settings),
    ]


def test_left_padded_batch_equals_one_by_one(gen):
    reqs = _requests()
    lengths = {
        len(build_prompt_ids(gen.tokenizer, r, gen.context_window, GREEDY.max_new_tokens)) for r in reqs
    }
    assert len(lengths) == 3  # the batch really needs padding
    batch = gen.generate(reqs)
    single = [gen.generate([r])[0] for r in reqs]
    assert batch == single
    assert all(isinstance(t, str) for t in batch) and any(t for t in batch)


def test_groups_by_settings_and_keeps_order(gen):
    short = GREEDY.model_copy(update={"max_new_tokens": 3})
    reqs = _requests()
    mixed = [reqs[0], GenerationRequest(text=reqs[1].text, intent=reqs[1].intent, settings=short), reqs[2]]
    out = gen.generate(mixed)
    assert out[0] == gen.generate([reqs[0]])[0] and out[2] == gen.generate([reqs[2]])[0]
    assert len(out[1].split()) <= 3  # 3 new tokens at most (plus a trailing ellipsis)


def test_sampling_runs_and_never_echoes_the_prompt(gen):
    marker = "zebra quartz seventy seven"
    sampled = GenerationSettings(
        max_new_tokens=30, temperature=0.9, top_p=0.9, top_k=20, repetition_penalty=1.2
    )
    out = gen.generate(
        [
            GenerationRequest(
                text=f"my code is {marker}", intent="track_order", style="Be kind.", settings=sampled
            )
        ]
        * 2
    )
    assert len(out) == 2
    for text in out:
        assert marker not in text and "<|" not in text and "Be kind." not in text


def test_long_history_and_huge_max_new_tokens_fit_the_window(gen):
    history = tuple(
        Turn("user" if i % 2 else "bot", "please tell me about my order and the refund " * 3)
        for i in range(40)
    )
    settings = GenerationSettings(do_sample=False, max_new_tokens=1024, history_turns=200)
    out = gen.generate(
        [GenerationRequest(text="and now?", intent="track_order", history=history, settings=settings)]
    )
    assert isinstance(out[0], str)  # no position overflow, max_new_tokens capped to the window


def test_decode_stops_at_end_token_and_strips_specials(gen):
    tok = gen.tokenizer
    ids = tok.encode("Your order is on its way.", add_special_tokens=False)
    tail = tok.encode(" And then some junk", add_special_tokens=False)
    assert gen._decode([*ids, gen.end_id, *tail], max_new=200) == "Your order is on its way."
    assert (
        gen._decode([tok.convert_tokens_to_ids("<|bot|>"), *ids], max_new=200) == "Your order is on its way."
    )
    cut = tok.encode("Your order is on its way. Please check the page and", add_special_tokens=False)
    assert (
        gen._decode(cut, max_new=len(cut)) == "Your order is on its way."
    )  # hit the limit: no half sentence
    assert gen._decode(cut, max_new=len(cut) + 5).endswith(
        "page and"
    )  # under the limit: the model's own text stays


@pytest.mark.parametrize(
    ("raw", "hit_limit", "expected"),
    [
        (
            "Sure.  Call   {{Customer Support Phone Number}} now.",
            False,
            "Sure. Call {{Customer Support Phone Number}} now.",
        ),
        (
            "Steps:\n\n\n\n1.  Log in.\n2. Open   orders.\n3. Click",
            True,
            "Steps:\n\n1. Log in.\n2. Open orders.",
        ),
        ("Please call {{Cust", False, "Please call"),
        ("Please call {{Customer Support}", False, "Please call"),
        (
            'Pick the {{Termination." option, then {{Live Chat}}.',
            False,
            'Pick the Termination." option, then {{Live Chat}}.',
        ),
        ("Done }} and {{A}} {{B}}", False, "Done and {{A}} {{B}}"),
        ("We can help. Visit {{Website URL}} and then", True, "We can help."),
        ("Steps:\n1. Log in.\n2.", True, "Steps:\n1. Log in."),
        ("no sentence end at all here and", True, "no sentence end at all here…"),
        ("<|bot|>Hello there!<|end|>", False, "Hello there!"),
        ("", True, ""),
    ],
)
def test_clean_reply(raw, hit_limit, expected):
    assert clean_reply(raw, hit_limit=hit_limit) == expected


def test_missing_and_corrupt_folders_raise_model_missing(tmp_path, gen):
    with pytest.raises(ModelMissing, match="chatbot train lm") as exc:
        Generator.from_pretrained(tmp_path / "nope")
    assert str(exc.value).count("\n") == 0 and "nope" in str(exc.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ModelMissing, match=r"broken.*chatbot train lm"):
        Generator.from_pretrained(broken)
    # real config and tokenizer, truncated weights
    bad = tmp_path / "badweights"
    gen.model.save_pretrained(bad)
    gen.tokenizer.save_pretrained(bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelMissing, match="does not load"):
        Generator.from_pretrained(bad)


def test_context_window_comes_from_config(gen):
    assert gen.context_window == gen.model.config.n_positions == 96
    assert gen.end_id == gen.tokenizer.convert_tokens_to_ids(END)
    assert Path(gen.path).name == "tiny"


def test_the_customers_reference_numbers_are_put_back_into_the_reply(gen, monkeypatch):
    seen: list[str] = []
    real_build = build_prompt_ids

    def spy(tokenizer, request, window, max_new):
        seen.append(request.text)
        return real_build(tokenizer, request, window, max_new)

    monkeypatch.setattr("core.generator.build_prompt_ids", spy)
    monkeypatch.setattr(gen, "_decode", lambda tokens, max_new: "Order {{Reference 1}} is on its way.")
    [reply] = gen.generate([GenerationRequest(text="where is order 00123842?", settings=GREEDY)])
    assert seen == ["where is order {{Reference 1}}?"]  # the model never sees the digits
    assert reply == "Order 00123842 is on its way."


def test_generation_metrics_count_batches_and_written_tokens(gen):
    """Batch sizes and tokens written reach Prometheus; the padding after a row's stop
    token (while longer rows finish) is not counted as generated."""
    from core.generator import _written
    from core.metrics import GENERATED_TOKENS, GENERATION_BATCH

    word = next(t for t in range(100, 200) if t not in gen.stop_ids)
    assert _written([word, word, gen.end_id, gen.pad_id, gen.pad_id], gen.stop_ids) == 3
    assert _written([word] * 4, gen.stop_ids) == 4
    batches_before = GENERATION_BATCH._sum.get()  # the sum of observed batch sizes
    tokens_before = GENERATED_TOKENS._value.get()
    requests = _requests()
    gen.generate(requests)
    assert GENERATION_BATCH._sum.get() - batches_before == len(requests)
    written = GENERATED_TOKENS._value.get() - tokens_before
    assert 0 < written <= len(requests) * GREEDY.max_new_tokens
