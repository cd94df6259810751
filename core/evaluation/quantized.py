"""fp32 against int8, side by side on the same held-out data: what quantisation costs in
quality and what it buys in speed (``chatbot models quantize``).

- dialogue LM: perplexity on every held-out reply and ROUGE-L of ``limit`` greedy
  replies (``core.evaluation.lm_report``, up to ``max_new_tokens`` each), and generated
  tokens/s of those prompts answered together through the continuous-batching scheduler;
- intent classifier: accuracy and OOS recall (``core.evaluation.intent_report``), and
  messages/s at batch 1 (one message at a time) and batch 32.

Both models are loaded in this process and timed in alternating rounds, so a busy
spell on a shared machine hits both; each one's best round counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from core.persona import GenerationSettings
from core.prompt import Dialogue
from core.protocols import GenerationRequest
from core.training.data import Example

VARIANTS = ("fp32", "int8")


def best_rounds(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each run's best throughput over ``rounds`` alternating rounds (a run returns a rate)."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = max(best[name], run())
    return best


def compare_lm(
    folders: dict[str, Path],
    dialogues: Sequence[Dialogue],
    out_dir: Path,
    *,
    limit: int,
    max_new_tokens: int = 200,
    rounds: int = 2,
) -> dict[str, Any]:
    """Figures of the ``fp32`` and ``int8`` LM folders on ``dialogues``, with ratios."""
    from core.batching import ContinuousGenerator
    from core.evaluation.lm_report import EVAL_SETTINGS, evaluate_lm
    from core.generator import Generator

    generators = {name: Generator.from_pretrained(folders[name], device="cpu") for name in VARIANTS}
    figures: dict[str, dict[str, Any]] = {}
    quality = EVAL_SETTINGS.model_copy(update={"max_new_tokens": max_new_tokens})
    for name, gen in generators.items():
        report = evaluate_lm(gen, dialogues, out_dir / name, limit=limit, settings=quality)
        figures[name] = {k: report[k] for k in ("perplexity", "rouge_l", "bleu")}
    settings = GenerationSettings(do_sample=False, max_new_tokens=max_new_tokens, repetition_penalty=1.0)
    requests = [
        GenerationRequest(text=d.text, intent=d.intent, style=d.system, settings=settings)
        for d in dialogues[:limit]
    ]
    services = {
        name: ContinuousGenerator.start(gen, backend="dense", prefix_budget=0)
        for name, gen in generators.items()
    }

    def tokens_per_s(service: ContinuousGenerator) -> float:
        started = time.perf_counter()
        streams = [service.submit(r) for r in requests]
        for stream in streams:
            stream.result()
        return sum(len(s.tokens) for s in streams) / (time.perf_counter() - started)

    try:
        speed = best_rounds({n: partial(tokens_per_s, s) for n, s in services.items()}, rounds)
    finally:
        for service in services.values():
            service.close()
    for name in VARIANTS:
        figures[name]["tokens_per_s"] = round(speed[name], 1)
    return _with_ratios("lm", figures, len(dialogues), limit, rounds)


def compare_intent(
    folders: dict[str, Path], examples: Sequence[Example], out_dir: Path, *, rounds: int = 2
) -> dict[str, Any]:
    """Figures of the ``fp32`` and ``int8`` classifier folders on ``examples``, with ratios."""
    from core.evaluation.intent_report import evaluate_intent
    from core.intents import IntentClassifier

    models = {name: IntentClassifier.from_pretrained(folders[name], device="cpu") for name in VARIANTS}
    figures: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        report = evaluate_intent(model, examples, out_dir / name)
        figures[name] = {k: report[k] for k in ("accuracy", "macro_f1", "oos_recall") if k in report}
    texts = [e.text for e in examples]

    def per_s(model: IntentClassifier, batch: int, sample: list[str]) -> float:
        started = time.perf_counter()
        for start in range(0, len(sample), batch):
            model.predict(sample[start : start + batch], batch_size=batch)
        return len(sample) / (time.perf_counter() - started)

    for batch, sample in ((1, texts[:64]), (32, texts)):
        label = f"messages_per_s_batch{batch}"
        speed = best_rounds({n: partial(per_s, m, batch, sample) for n, m in models.items()}, rounds)
        for name in VARIANTS:
            figures[name][label] = round(speed[name], 1)
    return _with_ratios("intent", figures, len(examples), len(texts), rounds)


def _with_ratios(
    kind: str, figures: dict[str, dict[str, Any]], n: int, timed: int, rounds: int
) -> dict[str, Any]:
    fp32, int8 = figures["fp32"], figures["int8"]
    speedup = {k: round(int8[k] / fp32[k], 2) for k in fp32 if "per_s" in k and fp32[k]}
    return {
        "kind": kind,
        "examples": n,
        "timed_examples": timed,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "fp32": fp32,
        "int8": int8,
        "int8_speedup": speedup,
    }
