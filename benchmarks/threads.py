"""Torch CPU threads for a serving process: the LM decoding and the intent classifier at
the same time, for each intra-op thread count, against the first one given.

    python -m benchmarks.threads [--seconds 20] [--threads 1,2,4]

Each setting runs in a fresh process (torch's thread pools are per process), configured
through ``CHATBOT_TORCH_THREADS`` as ``core.device.configure_threads`` reads it. In it,
the dense scheduler decodes a steady batch of 16 replies with a randomly initialised
GPT-2 of the default ``small`` preset, and a second thread classifies 16 messages at a
time with the bundled MiniLM encoder (the default classifier's size), both for
``--seconds``. Reported: LM tokens/s and classifier messages/s, each as a ratio to the
one-thread setting. ``core.device.thread_plan`` follows what this measured on 2 cores:
every usable core for each model.
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


def measure(seconds: float) -> dict[str, Any]:
    """One setting, in this process: LM and classifier side by side for ``seconds``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from benchmarks.generation import random_default_lm
    from core.batching import DenseBackend, Job
    from core.device import configure_threads
    from core.training.intent import default_base

    plan = configure_threads(os.environ.get("CHATBOT_TORCH_THREADS"))
    gen = random_default_lm()
    base = default_base()
    tokenizer = AutoTokenizer.from_pretrained(base)
    classifier = AutoModelForSequenceClassification.from_pretrained(base, num_labels=30).eval()
    texts = ["where is my parcel, it should have arrived last week"] * 16
    backend = DenseBackend(gen.model, kv_budget=1 << 20)
    stop = time.perf_counter() + seconds
    generated: list[int] = []
    classified: list[int] = []

    def keep_decoding() -> None:  # 16 replies in flight; each finished one is replaced
        def finished(_c: Any) -> None:
            generated.append(64)
            if time.perf_counter() < stop:
                backend.submit(Job(list(range(1, 41)), 64, frozenset(), on_finish=finished))

        for _ in range(16):
            backend.submit(Job(list(range(1, 41)), 64, frozenset(), on_finish=finished))

    def keep_classifying() -> None:
        with torch.inference_mode():
            while time.perf_counter() < stop:
                classifier(**tokenizer(texts, padding=True, return_tensors="pt"))
                classified.append(len(texts))

    started = time.perf_counter()
    keep_decoding()
    worker = threading.Thread(target=keep_classifying)
    worker.start()
    worker.join()
    elapsed = time.perf_counter() - started
    backend.close()
    return {
        "intra_op": plan.intra_op,
        "lm_tokens_per_s": round(sum(generated) / elapsed, 1),
        "classifier_messages_per_s": round(sum(classified) / elapsed, 1),
    }


def main(settings: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    for threads in settings:
        env = {**os.environ, "CHATBOT_TORCH_THREADS": str(threads)}
        env.pop("OMP_NUM_THREADS", None)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.threads", "--one", "--seconds", str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
    base = rows[0]
    for row in rows:
        row["lm_ratio"] = round(row["lm_tokens_per_s"] / base["lm_tokens_per_s"], 2)
        row["classifier_ratio"] = round(
            row["classifier_messages_per_s"] / base["classifier_messages_per_s"], 2
        )
    print(json.dumps({"cores": len(os.sched_getaffinity(0)), "seconds": seconds, "settings": rows}, indent=2))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--threads", default="1,2", help="intra-op settings to compare, the first is the base"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.seconds)))
    else:
        main([int(t) for t in args.threads.split(",")], args.seconds)
