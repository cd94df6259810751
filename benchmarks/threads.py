"""The LM decoding beside the intent classifier: on one thread (the model lane) or on two.

    python -m benchmarks.threads [--seconds 15] [--rate 10] [--threads 2]

Each setting runs in a fresh process (libgomp's thread teams are per process), with
torch threads set as ``chatbot run`` sets them (``core.device.configure_threads``,
``CHATBOT_TORCH_THREADS``; ``--threads`` overrides). In it, the dense scheduler decodes a
steady batch of 32 replies with a randomly initialised GPT-2 of the default ``small``
preset, while a client thread classifies one message at a time, ``--rate`` times a
second, with the bundled MiniLM encoder (the default classifier's size and head):

  alone        no classifier: the LM's speed on its own
  idle-neighbour  the client thread classifies once, at the start, then only sleeps:
               what a second thread that has computed with torch costs by being alive
  side-by-side the classifier computes on the client thread, beside the decoding (how
               the engine ran before ``core.lane``)
  lane         the classifier's calls run on the model lane between two decoding steps
               (``core.lane.Lane.run``, how the engine runs on CPU)

Reported: LM tokens/s (and its ratio to ``alone``), classifications/s and the p50 time
of one classification as the client sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

MODES = ("alone", "idle-neighbour", "side-by-side", "lane")


def measure(mode: str, seconds: float, rate: float) -> dict[str, Any]:
    """One setting, in this process."""
    import torch
    from transformers import AutoTokenizer

    from benchmarks.generation import random_default_lm
    from core.batching import DenseBackend, Job
    from core.device import configure_threads
    from core.lane import shared_lane
    from core.pooled_classifier import MeanPoolForSequenceClassification
    from core.training.intent import default_base

    plan = configure_threads(os.environ.get("CHATBOT_TORCH_THREADS"))
    lane = shared_lane()
    gen = lane.run(random_default_lm)  # built on the lane: this thread never computes
    base = default_base()
    tokenizer = AutoTokenizer.from_pretrained(base)
    classifier = lane.run(
        lambda: MeanPoolForSequenceClassification.from_pretrained(base, num_labels=30).eval()
    )
    text = ["where is my parcel, it should have arrived last week"]
    backend = DenseBackend(gen.model, kv_budget=1 << 20)  # steps on the shared lane
    stop = time.perf_counter() + seconds
    generated: list[int] = []
    waits: list[float] = []

    def finished(_c: Any) -> None:  # 32 replies in flight; each finished one is replaced
        generated.append(64)
        if time.perf_counter() < stop:
            backend.submit(Job(list(range(1, 41)), 64, frozenset(), on_finish=finished))

    def classify() -> Any:
        with torch.inference_mode():
            return classifier(**tokenizer(text, return_tensors="pt")).logits

    def client() -> None:
        if mode == "idle-neighbour":
            classify()
            time.sleep(max(0.0, stop - time.perf_counter()))
            return
        while time.perf_counter() < stop:
            t = time.perf_counter()
            if mode == "side-by-side":
                classify()
            elif mode == "lane":
                lane.run(classify)
            if mode != "alone":
                waits.append(time.perf_counter() - t)
            time.sleep(max(0.0, 1 / rate - (time.perf_counter() - t)))

    started = time.perf_counter()
    for _ in range(32):
        backend.submit(Job(list(range(1, 41)), 64, frozenset(), on_finish=finished))
    worker = threading.Thread(target=client)
    worker.start()
    worker.join()
    elapsed = time.perf_counter() - started
    backend.close()
    waits.sort()
    return {
        "mode": mode,
        "intra_op": plan.intra_op,
        "lm_tokens_per_s": round(sum(generated) / elapsed, 1),
        "classified_per_s": round(len(waits) / elapsed, 1),
        "classify_p50_ms": round(1000 * waits[len(waits) // 2], 1) if waits else None,
    }


def main(seconds: float, rate: float, threads: int | None) -> list[dict[str, Any]]:
    rows = []
    env = dict(os.environ)
    if threads:
        env["CHATBOT_TORCH_THREADS"] = str(threads)
    for mode in MODES:
        command = [sys.executable, "-m", "benchmarks.threads", "--one", mode]
        done = subprocess.run(
            [*command, "--seconds", str(seconds), "--rate", str(rate)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
    alone = rows[0]["lm_tokens_per_s"]
    for row in rows:
        row["lm_ratio"] = round(row["lm_tokens_per_s"] / alone, 2)
    report = {"cores": len(os.sched_getaffinity(0)), "seconds": seconds, "rate": rate, "settings": rows}
    print(json.dumps(report, indent=2))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=10.0, help="classifications per second")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.seconds, args.rate)))
    else:
        main(args.seconds, args.rate, args.threads)
