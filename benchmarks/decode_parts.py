"""The parts of a CPU decoding step, measured one by one: where fp32 continuous batching stops.

    python -m benchmarks.decode_parts [--rows 31] [--width 140] [--shared 32] [--model models/lm-default]

On the model lane, torch threads as ``chatbot run`` sets them, with the shapes of the
reply model's config (the default LM's when ``--model`` is missing):

1. **memory**: GB/s summing a tensor that fits the L3 cache (8 MB) and one that does not
   (256 MB): a step reads every running row's keys/values and all the weights;
2. **matrix products**: the model's Linear layers and output head at ``--rows`` rows
   (GMAC/s), with one thread and with every thread, as a ratio: how much a second core
   adds to a small batch's products; and the same products through oneDNN with packed
   weights (``core.packed_linear``, what serving runs on CPU), as a ratio against
   ``F.linear`` (MKL's sgemm), with their largest difference;
3. **attention**: one step's one-query attention over every layer of a slot cache laid
   out as the scheduler's (``core/batching/kv_cache.py``: ``rows`` of ``width`` columns
   in buffers of 48 slots x the context), a 5 MB weight read between layers as in a
   real step, written three ways, as ratios against the first:
   ``matmul`` (``core.batching.attention``: two matrix products), ``einsum``, and
   ``shared prefix`` (the first ``--shared`` columns, the persona segment every row
   of one persona starts with, read once for all rows and merged into each row's
   softmax, as cascade attention does). Each way's largest difference from the
   first is reported beside its time: they compute the same attention.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.device import THREADS_ENV, configure_threads
from core.lane import shared_lane
from core.packed_linear import PackedLinear
from core.packed_linear import available as packed_available

SLOTS = 48  # core.batching.backends.CPU_MAX_ROWS


def timed(fn: Callable[[], object], repeats: int = 5, calls: int = 30) -> float:
    """Median over ``repeats`` of the mean seconds per call of ``fn``."""
    for _ in range(3):
        fn()
    rounds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - started) / calls)
    return statistics.median(rounds)


def memory() -> dict[str, float]:
    out = {}
    for label, megabytes in (("l3_8mb", 8), ("dram_256mb", 256)):
        x = torch.randn(megabytes * 262_144)
        out[f"{label}_gb_per_s"] = round(megabytes / 1024 / timed(x.sum, calls=max(3, 800 // megabytes)), 1)
    out["ratio"] = round(out["l3_8mb_gb_per_s"] / out["dram_256mb_gb_per_s"], 2)
    return out


def products(shape: dict[str, int], rows: int, threads: int) -> list[dict[str, Any]]:
    c, v = shape["n_embd"], shape["vocab_size"]
    layers = {
        "c_attn": (c, 3 * c),
        "attn c_proj": (c, c),
        "c_fc": (c, 4 * c),
        "mlp c_proj": (4 * c, c),
        "head": (c, v),
    }
    out = []
    for name, (k, n) in layers.items():
        x, w = torch.randn(rows, k), torch.randn(n, k) * 0.02
        layer = nn.Linear(k, n, bias=False)
        layer.weight = nn.Parameter(w, requires_grad=False)
        packed = PackedLinear(layer.weight, None) if packed_available() else None
        rates, packed_rates = {}, {}
        for t in (1, threads):
            torch.set_num_threads(t)
            rates[t] = rows * k * n / timed(lambda x=x, w=w: F.linear(x, w), calls=50) / 1e9
            if packed is not None:
                packed_rates[t] = rows * k * n / timed(lambda x=x, p=packed: p(x), calls=50) / 1e9
        torch.set_num_threads(threads)
        row: dict[str, Any] = {
            "layer": name,
            "shape": f"{rows}x{k}x{n}",
            "gmac_per_s_1_thread": round(rates[1], 1),
            f"gmac_per_s_{threads}_threads": round(rates[threads], 1),
            "ratio": round(rates[threads] / rates[1], 2),
        }
        if packed is not None:  # core.packed_linear, what serving runs: against F.linear (MKL)
            with torch.inference_mode():
                diff = (packed(x) - F.linear(x, w)).abs().max().item()
            row |= {
                "packed_gmac_per_s_1_thread": round(packed_rates[1], 1),
                f"packed_gmac_per_s_{threads}_threads": round(packed_rates[threads], 1),
                "packed_ratio": round(packed_rates[threads] / rates[threads], 2),
                "packed_max_abs_diff": diff,
            }
        out.append(row)
    return out


def attention(shape: dict[str, int], rows: int, width: int, shared: int) -> dict[str, Any]:
    heads, layers = shape["n_head"], shape["n_layer"]
    dim, capacity = shape["n_embd"] // heads, shape["n_positions"]
    cache = [
        (torch.randn(SLOTS, heads, capacity, dim), torch.randn(SLOTS, heads, capacity, dim))
        for _ in range(layers)
    ]
    weights = [torch.randn(5 * 262_144) for _ in range(layers)]  # 5 MB read between layers
    q = torch.randn(rows, heads, 1, dim)
    mask = torch.zeros(rows, 1, 1, width)
    by_head = q[:, :, 0].transpose(0, 1)  # (H, B, D)

    for keys, values in cache:  # every row starts with the same `shared` columns
        keys[:, :, :shared], values[:, :, :shared] = keys[:1, :, :shared], values[:1, :, :shared]

    def matmul() -> torch.Tensor:
        for (keys, values), w in zip(cache, weights, strict=True):
            w.sum()
            k, v = keys[:rows, :, :width], values[:rows, :, :width]
            p = (torch.matmul(q, k.transpose(-1, -2)) + mask).softmax(-1)
            out = torch.matmul(p, v)
        return out

    def einsum() -> torch.Tensor:
        for (keys, values), w in zip(cache, weights, strict=True):
            w.sum()
            k, v = keys[:rows, :, :width], values[:rows, :, :width]
            p = (torch.einsum("bhqd,bhwd->bhqw", q, k) + mask).softmax(-1)
            out = torch.einsum("bhqw,bhwd->bhqd", p, v)
        return out

    def shared_prefix() -> torch.Tensor:
        for (keys, values), w in zip(cache, weights, strict=True):
            w.sum()
            k0, v0 = keys[0, :, :shared], values[0, :, :shared]  # (H, P, D): read once
            k, v = keys[:rows, :, shared:width], values[:rows, :, shared:width]
            head = torch.matmul(by_head, k0.transpose(-1, -2)).permute(1, 0, 2)[:, :, None]  # (B, H, 1, P)
            tail = torch.matmul(q, k.transpose(-1, -2)) + mask[..., shared:]
            p = torch.cat([head, tail], -1).softmax(-1)
            first = torch.matmul(p[:, :, 0, :shared].transpose(0, 1), v0).transpose(0, 1)[:, :, None]
            out = torch.matmul(p[..., shared:], v) + first
        return out

    ways = {"matmul": matmul, "einsum": einsum, "shared prefix": shared_prefix}
    reference = matmul()
    differ = {name: float((fn() - reference).abs().max()) for name, fn in ways.items()}
    ms = {name: 1000 * timed(fn) for name, fn in ways.items()}
    base = ms["matmul"]
    read = 2 * layers * rows * width * heads * dim * 4 / 2**20
    return {
        "rows": rows,
        "width": width,
        "shared": shared,
        "kv_read_mb": round(read, 1),
        "ways": [
            {"way": n, "ms_per_step": round(t, 2), "ratio": round(t / base, 2), "max_abs_diff": differ[n]}
            for n, t in ms.items()
        ],
    }


def model_shape(model: Path) -> dict[str, int]:
    shape = {"n_embd": 256, "n_head": 4, "n_layer": 4, "n_positions": 384, "vocab_size": 6604}  # lm-default
    config = model / "config.json"
    if config.is_file():
        saved = json.loads(config.read_text())
        shape.update({k: int(saved[k]) for k in shape if k in saved})
    return shape


def main(model: Path, rows: int, width: int, shared: int) -> dict[str, Any]:
    plan = configure_threads(os.environ.get(THREADS_ENV))
    shape = model_shape(model)
    if not 0 < shared < width <= shape["n_positions"] or rows > SLOTS:
        raise SystemExit(f"need 0 < --shared < --width <= {shape['n_positions']} and --rows <= {SLOTS}")

    def measure() -> dict[str, Any]:
        return {
            "shape": shape,
            "threads": plan.intra_op,
            "memory": memory(),
            "products": products(shape, rows, plan.intra_op),
            "attention": attention(shape, rows, width, shared),
        }

    report = shared_lane().run(measure)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/lm-default"))
    parser.add_argument("--rows", type=int, default=31)
    parser.add_argument("--width", type=int, default=140)
    parser.add_argument(
        "--shared", type=int, default=32, help="columns every row shares (the persona segment)"
    )
    args = parser.parse_args()
    main(args.model, args.rows, args.width, args.shared)
