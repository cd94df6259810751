"""Device choices that must be right on machines the tests do not run on: the GPU's
weight dtype, CUDA graphs for decoding, the KV budget from free memory; and the CPU
thread plan, from the cores this process may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, LlamaConfig

from core.batching.backends import _cuda_graphs, kv_budget_for
from core.device import (
    THREADS_ENV,
    available_cores,
    configure_threads,
    half_dtype,
    kv_budget_for_memory,
    kv_bytes_per_token,
    pick_dtype,
    thread_plan,
)
from core.errors import ConfigError

GIB = 1 << 30


def test_gpu_weights_are_bf16_where_supported_else_fp16_and_cpu_stays_fp32():
    assert half_dtype(True) is torch.bfloat16
    assert half_dtype(False) is torch.float16
    assert pick_dtype(torch.device("cpu")) is torch.float32


def test_kv_bytes_per_token_of_gpt2_small_and_a_grouped_query_model():
    gpt2 = GPT2Config(n_layer=12, n_embd=768, n_head=12)  # the 124 M shape
    assert kv_bytes_per_token(gpt2, torch.bfloat16) == 2 * 12 * 768 * 2  # 36 KiB
    assert kv_bytes_per_token(gpt2, torch.float32) == 2 * 12 * 768 * 4
    # Llama-style: 8 KV heads of 64 for 32 query heads; only the KV heads are cached
    gqa = LlamaConfig(num_hidden_layers=16, hidden_size=2048, num_attention_heads=32, num_key_value_heads=8)
    assert kv_bytes_per_token(gqa, torch.float16) == 2 * 16 * 8 * 64 * 2


def test_kv_budget_is_a_share_of_the_free_memory():
    per_token = 2 * 12 * 768 * 2
    # an H200 with 139 GiB free after loading GPT-2 small: 80% of it, in tokens
    assert kv_budget_for_memory(139 * GIB, per_token) == int(139 * GIB * 0.8) // per_token
    assert kv_budget_for_memory(139 * GIB, per_token) > 3_000_000
    assert kv_budget_for_memory(GIB, per_token, share=0.5) == (GIB // 2) // per_token
    with pytest.raises(ConfigError):
        kv_budget_for_memory(GIB, per_token, share=1.5)


def test_cpu_backends_get_the_fixed_budget():
    model = torch.nn.Linear(2, 2)
    assert kv_budget_for(torch.device("cpu"), model) == 16_384


def test_cuda_graphs_capture_decoding_only_and_only_on_cuda():
    assert _cuda_graphs(torch.device("cuda:0"), None) == (False, True)
    assert _cuda_graphs(torch.device("cuda:0"), False) == (False, False)
    assert _cuda_graphs(torch.device("cpu"), None) is None  # the library decides (nothing to capture)


# ---------------------------------------------------------------- CPU threads


def test_the_plan_uses_the_usable_cores_and_one_inter_op_thread():
    assert (thread_plan(2).intra_op, thread_plan(2).inter_op) == (2, 1)
    assert thread_plan(16).intra_op == 16
    assert thread_plan(1).intra_op == 1 and thread_plan(0).intra_op == 1


def test_the_environment_override_wins_and_bad_values_are_one_clear_error():
    assert thread_plan(16, override="3").intra_op == 3
    plan = thread_plan(16, override="6,2")
    assert (plan.intra_op, plan.inter_op, plan.source) == (6, 2, THREADS_ENV)
    for bad in ("zero", "0", "1,2,3", "-2"):
        with pytest.raises(ConfigError, match=THREADS_ENV):
            thread_plan(4, override=bad)


def test_a_cgroup_cpu_quota_caps_the_cores(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs -> 2
    assert available_cores(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cores(tmp_path) == len(os.sched_getaffinity(0))
    assert available_cores(tmp_path / "missing") >= 1


def test_configure_threads_applies_the_override():
    before = torch.get_num_threads()
    try:
        plan = configure_threads("1")
        assert plan.intra_op == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_settings_read_the_thread_override_then_omp(monkeypatch):
    from bots.config import Settings

    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert Settings().torch_threads == "3"  # torch read it too: the plan keeps it
    monkeypatch.setenv(THREADS_ENV, "4,1")
    assert Settings().torch_threads == "4,1"
