"""Decoding tokens/s of one CPU batch against the number of rows it holds.

    python -m benchmarks.batch_rows [--rows 16,32,48,64,96] [--seconds 8] [--model models/lm-default]
                                    [--sample]

For each row count, the dense scheduler (no row cap) keeps that many replies in flight
for ``--seconds``: 200-token prompts, up to 150 new tokens, each finished reply replaced
by a new one; greedy, or with ``--sample`` the default persona's sampling (temperature,
top-k, top-p, repetition penalty). Reported: generated tokens/s, and its ratio to the
first row count. This
sets ``core.batching.backends.CPU_MAX_ROWS``: past the point where a step's matrix
products fill the cores, more rows only make every step, and every reply, slower.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.generation import DEFAULT_MODEL, load
from bots.personas import default_personas
from core.batching import DenseBackend, Job, Sampling
from core.device import THREADS_ENV, configure_threads
from core.lane import shared_lane

PROMPT = list(range(5, 205))
NEW_TOKENS = 150


def measure(model: Any, rows: int, seconds: float, sampling: Sampling) -> float:
    backend = DenseBackend(model, kv_budget=1 << 22, max_rows=10_000)
    stop = time.perf_counter() + seconds
    written: list[int] = []

    def finished(completion: Any) -> None:
        if completion.error is None:
            written.append(len(completion.tokens))
        if time.perf_counter() < stop:
            backend.submit(Job(PROMPT, NEW_TOKENS, frozenset(), sampling, on_finish=finished))

    started = time.perf_counter()
    for i in range(rows):  # staggered lengths, so rows end at different steps from the start
        left = NEW_TOKENS - (i * NEW_TOKENS) // rows
        backend.submit(Job(PROMPT, left, frozenset(), sampling, on_finish=finished))
    while time.perf_counter() < stop:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    backend.close()  # replies still being written are not counted
    return sum(written) / elapsed


def main(counts: list[int], seconds: float, model_dir: Path, sample: bool = False) -> dict[str, Any]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    plan = configure_threads(os.environ.get(THREADS_ENV))
    gen, name = shared_lane().run(lambda: load(model_dir))
    persona = default_personas()[0].generation
    sampling = Sampling.from_settings(persona) if sample else Sampling()
    rows = [{"rows": n, "tokens_per_s": round(measure(gen.model, n, seconds, sampling), 1)} for n in counts]
    for row in rows:
        row["ratio"] = round(row["tokens_per_s"] / rows[0]["tokens_per_s"], 2)
    report = {
        "model": name,
        "threads": plan.intra_op,
        "seconds": seconds,
        "sampling": str(sampling),
        "runs": rows,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="16,32,48,64,96")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sample", action="store_true", help="the default persona's sampling, not greedy")
    args = parser.parse_args()
    main([int(r) for r in args.rows.split(",")], args.seconds, args.model, args.sample)
