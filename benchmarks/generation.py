"""Generator-level throughput: one ``generate`` per request against batched paths.

    python -m benchmarks.generation [--prompts 32] [--new-tokens 64] [--rounds 3] [--model models/lm-default]

The same prompts (held-out Bitext questions with the default persona's style), greedy,
``--new-tokens`` each, answered by

  naive     one ``Generator.generate`` call per request, one request at a time;
  padded    one left-padded ``model.generate`` over all of them (today's engine wave);
  dense     core.batching's scheduler over a dense KV cache (CPU default);
  library   transformers' ContinuousBatchingManager, paged attention (CUDA default);
  dense+int8  the dense scheduler on the int8-quantised model.

All paths must write the same replies (greedy decoding, no repetition penalty since the
library drops it); the int8 model is a different model, so its replies are only counted.
Figures are ratios against ``naive`` from the same run. Without ``--model`` (or when the
folder is missing) the model is a randomly initialised GPT-2 of the default ``small``
preset with a BPE tokenizer trained on Bitext: same size and speed, nonsense replies,
and every reply runs to ``--new-tokens`` (it never writes ``<|end|>``).

Every path but the library computes on the process's model lane (``core.lane``), as
serving does: a second thread computing with torch would slow every path (libgomp). The
library's manager computes on threads of its own, so it is started for its rounds only
and stopped before the next path runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bots.personas import default_personas
from core.batching import ContinuousGenerator, DenseBackend, LibraryBackend
from core.device import THREADS_ENV, configure_threads
from core.generator import Generator
from core.lane import shared_lane
from core.persona import GenerationSettings
from core.protocols import GenerationRequest
from core.quantize import quantize_int8
from core.training.config import PRESETS
from core.training.data import BITEXT_CSV, load_examples, stratified_split
from core.training.lm import train_tokenizer

DEFAULT_MODEL = Path("models/lm-default")


def random_default_lm() -> Generator:
    """A GPT-2 of the default preset's size (``small``, 8,000-token BPE, 256 positions)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    examples = load_examples(BITEXT_CSV)[:4000]
    tokenizer = train_tokenizer([t for e in examples for t in (e.text, e.response)], 8000)
    n_layer, n_embd, n_head = PRESETS["small"]
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=n_embd, n_layer=n_layer, n_head=n_head
    )
    return Generator(GPT2LMHeadModel(config).eval(), tokenizer, torch.device("cpu"))


def load(model: Path | None) -> tuple[Generator, str]:
    if model is not None and (model / "config.json").is_file():
        return Generator.from_pretrained(model, device="cpu"), str(model)
    return random_default_lm(), "random GPT-2 `small` preset (no trained model found)"


def requests(n: int, new_tokens: int) -> list[GenerationRequest]:
    persona = default_personas()[0]
    settings = GenerationSettings(do_sample=False, max_new_tokens=new_tokens, repetition_penalty=1.0)
    _train, held = stratified_split(load_examples(BITEXT_CSV), 0.1)
    return [
        GenerationRequest(text=e.text, intent=e.intent, style=persona.style, settings=settings)
        for e in held[:n]
    ]


def answer(service: ContinuousGenerator, reqs: list[GenerationRequest]) -> tuple[list[str], int]:
    """All requests submitted at once; the replies and how many tokens were generated."""
    streams = [service.submit(r) for r in reqs]
    replies = [s.result() for s in streams]
    return replies, sum(len(s.tokens) for s in streams)


Run = Callable[[list[GenerationRequest]], tuple[list[str], int]]


def main(n: int, new_tokens: int, model_dir: Path | None, rounds: int, out: Path | None) -> dict[str, object]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    configure_threads(os.environ.get(THREADS_ENV))  # as `chatbot run` does
    lane = shared_lane()
    gen, model_name = lane.run(lambda: load(model_dir))
    reqs = requests(n, new_tokens)
    params = sum(p.numel() for p in gen.model.parameters())
    int8_gen = lane.run(
        lambda: quantize_int8(Generator(copy.deepcopy(gen.model), gen.tokenizer, gen.device, gen.path))
    )
    dense = ContinuousGenerator(gen, DenseBackend(gen.model, kv_budget=1 << 20))
    int8 = ContinuousGenerator(int8_gen, DenseBackend(int8_gen.model, kv_budget=1 << 20))

    def library(rs: list[GenerationRequest]) -> tuple[list[str], int]:
        return answer(running_library[0], rs)

    running_library: list[ContinuousGenerator] = []
    paths: dict[str, Run] = {
        # naive and padded write the same tokens as dense (checked below) and borrow its count
        "naive": lambda rs: (lane.run(lambda: [gen.generate([r])[0] for r in rs]), 0),
        "padded": lambda rs: (lane.run(lambda: gen.generate(rs)), 0),
        "dense": lambda rs: answer(dense, rs),
        "library": library,
        "dense+int8": lambda rs: answer(int8, rs),
    }

    def start(name: str) -> None:  # the library's threads live only while its path runs
        if name == "library":
            running_library.append(ContinuousGenerator(gen, LibraryBackend(gen.model, kv_budget=n * 512)))

    def stop(name: str) -> None:
        if name == "library":
            running_library.pop().close()

    seconds: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}  # CPU seconds, all threads
    replies: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    try:
        for name, run in paths.items():
            start(name)
            run(reqs[:2])  # warm-up
            stop(name)
        # Rounds interleave the paths so a busy spell on the shared machine hits them all;
        # the best round of each path is its figure.
        for r in range(rounds):
            for name, run in paths.items():
                start(name)
                t0, c0 = time.perf_counter(), time.process_time()
                replies[name], counts[name] = run(reqs)
                seconds[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                stop(name)
                print(f"round {r + 1} {name}: {seconds[name][-1]:.2f} s", file=sys.stderr, flush=True)
    finally:
        for service in (dense, int8, *running_library):
            service.close()

    base_s, base_cpu = min(seconds["naive"]), min(cpu["naive"])
    tokens = counts["dense"]
    result: dict[str, object] = {
        "model": model_name,
        "params": params,
        "prompts": n,
        "new_tokens": new_tokens,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "generated_tokens": tokens,
    }
    for name in paths:
        best = min(seconds[name])
        result[name] = {
            "replies_per_s": round(n / best, 2),
            "tokens_per_s": round((counts[name] or tokens) / best, 1),
            "speedup": round(base_s / best, 2),
            "cpu_speedup": round(base_cpu / min(cpu[name]), 2),  # steadier when the machine is busy
            "seconds": [round(x, 2) for x in seconds[name]],
            "cpu_seconds": [round(x, 2) for x in cpu[name]],
            # the int8 model is another model: its replies may differ; its own tokens are counted
            "same_replies_as_naive": replies[name] == replies["naive"],
        }
    print(json.dumps(result, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    main(args.prompts, args.new_tokens, args.model, args.rounds, args.out)
