"""benchmarks/decode_parts.py times three ways of one decoding step's attention; they
must compute the same thing for the comparison to mean anything."""

from __future__ import annotations

from benchmarks.decode_parts import attention, model_shape, products
from core.packed_linear import available

SMALL = {"n_embd": 32, "n_head": 2, "n_layer": 2, "n_positions": 24, "vocab_size": 50}


def test_the_three_attention_ways_agree():
    report = attention(SMALL, rows=5, width=12, shared=4)
    ways = {w["way"]: w for w in report["ways"]}
    assert set(ways) == {"matmul", "einsum", "shared prefix"}
    assert all(w["max_abs_diff"] < 1e-5 and w["ms_per_step"] > 0 for w in ways.values())


def test_shape_falls_back_to_the_default_lm(tmp_path):
    assert model_shape(tmp_path / "missing")["vocab_size"] == 6604
    (tmp_path / "config.json").write_text('{"n_embd": 64, "n_head": 2}')
    assert model_shape(tmp_path)["n_embd"] == 64 and model_shape(tmp_path)["n_layer"] == 4


def test_the_packed_products_compute_what_f_linear_does():
    rows = products(SMALL, rows=3, threads=1)
    assert [r["layer"] for r in rows] == ["c_attn", "attn c_proj", "c_fc", "mlp c_proj", "head"]
    if available():  # a torch with oneDNN: every x86 wheel
        assert all(r["packed_max_abs_diff"] < 1e-5 and r["packed_ratio"] > 0 for r in rows)
