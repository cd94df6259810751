"""Packed oneDNN Linear layers (core.packed_linear): the same model, computed faster on
CPU; a tied head stays tied, nothing saved changes, and greedy replies are unchanged."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from core.batching.scheduler import ContinuousScheduler, Job
from core.packed_linear import PackedLinear, available, pack_linear_layers
from core.registry import ModelRegistry
from tests.test_batching import prompts, reference, run, tiny_model
from tests.test_intents import LABELS, make_model_folder

pytestmark = pytest.mark.skipif(not available(), reason="this torch build has no oneDNN")

VOCAB = 300


def test_a_packed_gpt2_computes_the_same_logits_and_keeps_its_weights_and_tied_head():
    plain = tiny_model(VOCAB, seed=3)
    packed = copy.deepcopy(plain)
    before = {k: v.clone() for k, v in packed.state_dict().items()}
    replaced = pack_linear_layers(packed)
    # per block: c_attn, attn c_proj, c_fc, mlp c_proj; and the output head
    assert replaced == 4 * plain.config.n_layer + 1
    assert all(not isinstance(m, nn.Linear) for m in packed.modules())
    assert isinstance(packed.lm_head, PackedLinear)
    assert packed.lm_head.weight is packed.transformer.wte.weight  # still tied
    after = packed.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    ids = torch.tensor(prompts(VOCAB, (7, 7, 7)))
    with torch.inference_mode():
        want, got = plain(ids).logits, packed(ids).logits
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-4


def test_continuous_batching_on_packed_weights_writes_the_unpacked_models_greedy_tokens():
    plain = tiny_model(VOCAB, seed=4)
    packed = copy.deepcopy(plain)
    assert pack_linear_layers(packed) > 0
    scheduler = ContinuousScheduler(packed, prefill_chunk=16)  # the 23/40-token prompts take chunks
    out = run(scheduler, [Job(p, 10, frozenset()) for p in prompts(VOCAB)])
    assert scheduler._gpt2_step  # the written-out step, on the packed modules
    assert [c.tokens for c in out] == [reference(plain, p, 10) for p in prompts(VOCAB)]


def test_models_that_are_not_float32_on_cpu_are_left_alone():
    half = tiny_model(VOCAB).to(torch.bfloat16)
    assert pack_linear_layers(half) == 0
    assert not any(isinstance(m, PackedLinear) for m in half.modules())


def test_the_registry_packs_cpu_classifiers_unless_told_not_to(tmp_path: Path):
    make_model_folder(tmp_path / "intent-tiny", LABELS, seed=1)
    texts = ["where is my order", "cancel it please", "ünïcödé 🚚 refund?"]
    served = ModelRegistry(tmp_path, device="cpu").intent_model("intent-tiny")
    baseline = ModelRegistry(tmp_path, device="cpu", packed=False).intent_model("intent-tiny")
    modules = list(served.model.model.modules())  # type: ignore[attr-defined]  # lane wrapper -> classifier
    assert any(isinstance(m, PackedLinear) for m in modules)
    assert any(isinstance(m, PackedLinear) and m.gelu == "none" for m in modules)  # BERT's exact GELU, folded
    assert not any(isinstance(m, PackedLinear) for m in baseline.model.model.modules())  # type: ignore[attr-defined]
    got, want = served.predict(texts), baseline.predict(texts)
    assert [p.label for p in got] == [p.label for p in want]
    assert [p.confidence for p in got] == pytest.approx([p.confidence for p in want], abs=1e-4)


def test_an_mlps_gelu_moves_into_its_first_packed_product():
    from transformers.activations import GELUActivation, NewGELUActivation

    gpt2 = tiny_model(VOCAB, seed=6)
    pack_linear_layers(gpt2)
    mlp = gpt2.transformer.h[0].mlp
    assert mlp.c_fc.gelu == "tanh" and isinstance(mlp.act, nn.Identity)  # gelu_new, tanh form
    assert mlp.c_proj.gelu is None  # only the layer the activation follows
    layer = nn.Linear(64, 256)
    x = torch.randn(5, 1, 64)
    for act, algorithm in ((NewGELUActivation(), "tanh"), (GELUActivation(), "none")):
        packed = PackedLinear(layer.weight, layer.bias)
        packed.gelu = algorithm
        with torch.inference_mode():
            assert (packed(x) - act(layer(x))).abs().max().item() < 1e-5
