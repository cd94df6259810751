"""Decoding speed on a GPU against its memory-bandwidth bound (issue 12), in one run.

    python -m benchmarks.gpu [--out DIR] [--bandwidth TBPS] [--budget-s 240]
    python -m benchmarks.gpu --smoke        # tiny model, any device (CPU here), seconds

A randomly initialised GPT-2 of the 124 M shape (12 layers, 768 wide, 50,257 tokens;
random weights decode as fast as trained ones) is saved with a BPE tokenizer trained on
the bundled Bitext, then loaded the way serving loads it: ``Generator.from_pretrained``
(device and dtype: ``core.device``) and ``ContinuousGenerator.start`` (backend and KV
budget: ``core.batching.backends``). The script records

- which path was chosen: device, weight dtype, backend, KV budget, attention, CUDA graphs,
  and checks it is the CUDA path (cuda, bf16 or fp16, the library backend);
- generated tokens/s at batch 1 and at doubling batches up to the largest that fits the KV
  budget (or the time budget), every sequence 128 prompt + 128 new tokens, no stop token;
  for the chosen backend, for the library backend without CUDA graphs and for the dense
  backend, so the choice is measured;
- the memory-bandwidth bound: a decoding step reads every weight (and each sequence's
  keys/values) once, so at batch B tokens/s <= B x bandwidth / (weight bytes + B x KV
  bytes); the bandwidth comes from a table by device name, or ``--bandwidth``.

Runs offline (only this repository and its dependencies). Writes ``gpu-benchmark.json``
to ``--out`` (default ``$OUT``, else ``reports/``) and prints a summary.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from core.batching import Backend, Completion, ContinuousGenerator, DenseBackend, Job, LibraryBackend
from core.device import kv_bytes_per_token

# Peak memory bandwidth, TB/s, by a substring of torch.cuda.get_device_name (first match).
BANDWIDTH_TBPS = (
    ("GH200", 4.0),  # before H200, which it contains (96 GB HBM3 version)
    ("H200", 4.8),
    ("H100 PCIe", 2.0),
    ("H100", 3.35),  # SXM
    ("A100-SXM4-80GB", 2.039),
    ("A100 80GB PCIe", 1.935),
    ("A100", 1.555),  # 40 GB
    ("L40S", 0.864),
    ("L40", 0.864),
    ("A10", 0.6),
    ("L4", 0.3),
    ("T4", 0.32),
    ("V100", 0.9),
    ("RTX 4090", 1.008),
    ("RTX 3090", 0.936),
)
FULL = {
    "layers": 12,
    "width": 768,
    "heads": 12,
    "vocab": 50_257,
    "positions": 1024,
    "prompt": 128,
    "new": 128,
}
SMOKE = {
    "layers": 2,
    "width": 64,
    "heads": 2,
    "vocab": 2_000,
    "positions": 128,
    "prompt": 16,
    "new": 8,
    "max_batch": 8,
}
# Shares of the time budget: the chosen path first and longest; the others for comparison.
SHARES = {"chosen": 0.5, "library-no-graphs": 0.25, "dense": 0.25}


def bandwidth_for(name: str, override: float | None) -> tuple[float | None, str]:
    """TB/s of the device, and where the figure came from."""
    if override:
        return override, "--bandwidth"
    for key, tbps in BANDWIDTH_TBPS:
        if key in name:
            return tbps, f"table ({key})"
    return None, "unknown device: pass --bandwidth"


def bound_tokens_per_s(batch: int, weight_bytes: int, kv_bytes_per_seq: float, tbps: float) -> float:
    """Memory-bandwidth bound on decoding tokens/s at ``batch``."""
    return batch * tbps * 1e12 / (weight_bytes + batch * kv_bytes_per_seq)


def build_model(folder: Path, shape: dict[str, int]) -> None:
    """A random GPT-2 of ``shape`` and a Bitext BPE tokenizer, saved the way training saves."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from core.training.data import BITEXT_CSV, load_examples
    from core.training.lm import train_tokenizer

    examples = load_examples(BITEXT_CSV)[:2000]
    tokenizer = train_tokenizer(
        [t for e in examples for t in (e.text, e.response)], min(shape["vocab"], 8000)
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=max(shape["vocab"], len(tokenizer)),
        n_positions=shape["positions"],
        n_embd=shape["width"],
        n_layer=shape["layers"],
        n_head=shape["heads"],
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def run_batch(backend: Any, batch: int, shape: dict[str, int], vocab: int, timeout: float) -> dict[str, Any]:
    """``batch`` sequences submitted at once; generated tokens/s from first submit to last finish."""
    g = torch.Generator().manual_seed(batch)
    done = threading.Semaphore(0)
    errors: list[BaseException] = []

    def finished(completion: Completion) -> None:
        if completion.error is not None:
            errors.append(completion.error)
        done.release()

    jobs = [
        Job(torch.randint(0, vocab, (shape["prompt"],), generator=g).tolist(), shape["new"], frozenset())
        for _ in range(batch)
    ]
    for job in jobs:
        job.on_finish = finished
    started = time.perf_counter()
    for job in jobs:
        backend.submit(job)
    for _ in jobs:
        if not done.acquire(timeout=max(0.0, timeout - (time.perf_counter() - started))):
            return {"batch": batch, "error": f"not finished within {timeout:.0f} s"}
    seconds = time.perf_counter() - started
    if errors:
        return {"batch": batch, "error": f"{type(errors[0]).__name__}: {str(errors[0])[:160]}"}
    tokens = sum(len(j.tokens) for j in jobs)
    return {
        "batch": batch,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def sweep(
    backend: Any, budget: int, shape: dict[str, int], vocab: int, deadline: float
) -> list[dict[str, Any]]:
    """Batch 1, then doubling while it fits the KV budget and time is left."""
    per_seq = shape["prompt"] + shape["new"]
    points: list[dict[str, Any]] = []
    run_batch(backend, 2, shape, vocab, timeout=max(30.0, deadline - time.perf_counter()))  # warm-up, graphs
    batch = 1
    largest = min(budget // per_seq, shape.get("max_batch") or budget)
    while batch <= largest and time.perf_counter() < deadline:
        point = run_batch(backend, batch, shape, vocab, timeout=deadline - time.perf_counter())
        points.append(point)
        print(
            f"  batch {batch}: {point.get('tokens_per_s', point.get('error'))}", file=sys.stderr, flush=True
        )
        if "error" in point:
            break
        batch *= 2 if batch > 1 else 8
    return points


def describe(service: ContinuousGenerator) -> dict[str, Any]:
    model: Any = service.generator.model
    backend = service.backend
    path: dict[str, Any] = {
        "device": str(service.generator.device),
        "dtype": str(next(model.parameters()).dtype),
        "backend": backend.name,
        "attention": getattr(model.config, "_attn_implementation", None),
    }
    if isinstance(backend, LibraryBackend):
        config = backend.manager.continuous_batching_config
        path |= {"kv_budget": config.num_blocks * config.page_size, "cuda_graphs": config.use_cuda_graph}
    elif isinstance(backend, DenseBackend):
        path["kv_budget"] = backend.scheduler.kv_budget
    return path


def main(args: argparse.Namespace) -> dict[str, Any]:
    from core.generator import Generator

    shape = SMOKE if args.smoke else FULL
    deadline = time.perf_counter() + args.budget_s
    on_cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if on_cuda else platform.processor() or "cpu"
    tbps, tbps_source = bandwidth_for(name, args.bandwidth)
    result: dict[str, Any] = {
        "device_name": name,
        "torch": torch.__version__,
        "shape": shape,
        "bandwidth_tbps": tbps,
        "bandwidth_source": tbps_source,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), shape)
        generator = Generator.from_pretrained(tmp)  # device and dtype as serving picks them
        model: Any = generator.model
        vocab = int(model.config.vocab_size)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        kv_seq = kv_bytes_per_token(model.config, next(model.parameters()).dtype) * (
            shape["prompt"] + shape["new"] / 2  # mean KV length while decoding
        )
        result |= {"params": sum(p.numel() for p in model.parameters()), "weight_bytes": weight_bytes}
        for variant, share in SHARES.items() if on_cuda else [("chosen", 1.0)]:
            until = min(deadline, time.perf_counter() + share * args.budget_s)
            path, points = measure(generator, variant, shape, vocab, until)
            gc.collect()
            if on_cuda:
                torch.cuda.empty_cache()  # the next variant sizes its KV budget from free memory
            for point in points:
                if tbps and "tokens_per_s" in point:
                    bound = bound_tokens_per_s(point["batch"], weight_bytes, kv_seq, tbps)
                    point |= {
                        "bound_tokens_per_s": round(bound, 1),
                        "of_bound": round(point["tokens_per_s"] / bound, 4),
                    }
            result["runs"][variant] = {"path": path, "points": points}
    chosen = result["runs"]["chosen"]["path"]
    result["cuda_path_checks"] = {
        "device is cuda": chosen["device"].startswith("cuda"),
        "weights are bf16/fp16": chosen["dtype"] in ("torch.bfloat16", "torch.float16"),
        "backend is the library's": chosen["backend"] == "library",
    }
    result["cuda_path_ok"] = all(result["cuda_path_checks"].values())
    return result


def measure(
    generator: Any, variant: str, shape: dict[str, int], vocab: int, deadline: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start ``variant`` the way serving would, describe its path, sweep the batches, close it."""
    from core.batching.backends import kv_budget_for

    if variant == "chosen":
        service = ContinuousGenerator.start(generator)  # what serving runs: backend "auto"
    else:
        budget = kv_budget_for(generator.device, generator.model)
        backend: Backend = (
            DenseBackend(generator.model, kv_budget=budget)
            if variant == "dense"
            else LibraryBackend(generator.model, kv_budget=budget, cuda_graphs=False)
        )
        service = ContinuousGenerator(generator, backend)
    try:
        path = describe(service)
        print(f"{variant}: {path}", file=sys.stderr, flush=True)
        return path, sweep(service.backend, path["kv_budget"], shape, vocab, deadline)
    finally:
        service.close()


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"{result['device_name']}: {result['params'] / 1e6:.0f} M params, "
        f"{result['weight_bytes'] / 1e6:.0f} MB of weights, "
        f"bandwidth {result['bandwidth_tbps']} TB/s ({result['bandwidth_source']})",
        f"CUDA path: {'OK' if result['cuda_path_ok'] else 'NOT CHOSEN'} {result['cuda_path_checks']}",
    ]
    for variant, run in result["runs"].items():
        lines.append(f"{variant}: {run['path']}")
        for p in run["points"]:
            bound = f", bound {p['bound_tokens_per_s']:,.0f} ({p['of_bound']:.1%})" if "of_bound" in p else ""
            lines.append(
                f"  batch {p['batch']:>5}: "
                + (f"{p['tokens_per_s']:,.0f} tokens/s{bound}" if "tokens_per_s" in p else p["error"])
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, any device: checks the script runs")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "reports"))
    parser.add_argument("--bandwidth", type=float, default=None, help="TB/s, overrides the table")
    parser.add_argument("--budget-s", type=float, default=240.0, help="stop starting new batches after this")
    parsed = parser.parse_args()
    report = main(parsed)
    parsed.out.mkdir(parents=True, exist_ok=True)
    (parsed.out / "gpu-benchmark.json").write_text(json.dumps(report, indent=2, default=str))
    print(summary(report))
    print(f"wrote {parsed.out / 'gpu-benchmark.json'}")
    sys.exit(0 if report["cuda_path_ok"] or parsed.smoke else 1)
