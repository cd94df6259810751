"""Intent recipes compared on the hand-written paraphrase set and Bitext validation.

    python -m benchmarks.intent_recipes [--out var/bench/intent-recipes] [--only NAME ...]
        [--fine-tune] [--json FILE]

Trains each recipe with ``train_intent`` (the same code as ``chatbot train intent``)
into ``OUT/NAME`` (a folder that already has ``metrics.json`` is reused), then loads it
with ``IntentClassifier`` and reports, per recipe: accuracy on the plain Bitext
validation split (the 10% that ``chatbot models build`` holds out, seed 13, the OOS
rule applied), in-scope accuracy and OOS recall on ``data/paraphrase/test.csv``, the
chosen threshold and temperature, the validation ECE before and after temperature
scaling, and the training time. The recipes differ from the default build
(``default_intent_config``) only in the fields listed. ``--fine-tune`` adds the
fine-tuned recipes (tens of minutes each on 2 CPU cores; the frozen-encoder ones take
a minute or two).

The frozen-encoder recipes share one encoder that never changes, so the script
computes each sentence's vector once for all of them (``_share_vectors``); everything
else is ``train_intent`` as the CLI runs it.

"old OOS" is the out-of-scope text the default build used before gibberish, other
languages and other businesses joined it (``generate_topics``), written to
``OUT/oos-topics.txt`` and passed as a file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from core.protocols import OUT_OF_SCOPE
from core.training.config import IntentTrainConfig, default_intent_config
from core.training.data import BITEXT_CSV, REPO_DATA, load_examples, stratified_split

PARAPHRASE_CSV = REPO_DATA / "paraphrase" / "test.csv"
FINE_TUNE = {"frozen_encoder": False, "pooling": "cls", "epochs": 3.0, "learning_rate": 2e-4}
MEAN = {"pooling": "mean", "epochs": 2.0, "learning_rate": 1e-4}
OLD_DATA = {"augment": 0.0, "casual": 0, "oos_examples": "OLD"}
# (name, overrides of default_intent_config, fine-tuned = slow)
RECIPES: list[tuple[str, dict[str, Any], bool]] = [
    ("fine-tuned [CLS], old data (the previous default)", FINE_TUNE | OLD_DATA, True),
    ("fine-tuned [CLS], new data", FINE_TUNE | {"epochs": 2.0}, True),
    ("fine-tuned mean-pooled, new data", FINE_TUNE | MEAN, True),
    ("frozen + LR head, old data", OLD_DATA, False),
    ("frozen + LR head, + new OOS text", {"augment": 0.0, "casual": 0}, False),
    ("frozen + LR head, + new OOS + rewrites", {"casual": 0}, False),
    ("frozen + LR head, + new OOS + casual requests", {"augment": 0.0}, False),
    ("frozen + LR head, + all (the default build)", {}, False),
    ("frozen + LR head, + all, C = 100", {"head_c": 100.0}, False),
    ("frozen + LR head, + all, no temperature", {"calibrate": False}, False),
]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _accuracy(clf: Any, rows: list[Any]) -> tuple[float, float, float]:
    """(in-scope accuracy with the OOS rule, the same for the top label alone, OOS
    recall) on labelled rows."""
    preds = clf.predict([r.text for r in rows])
    ins = [(r, p) for r, p in zip(rows, preds, strict=True) if r.intent != OUT_OF_SCOPE]
    oos = [p for r, p in zip(rows, preds, strict=True) if r.intent == OUT_OF_SCOPE]
    return (
        sum(p.label == r.intent for r, p in ins) / max(1, len(ins)),
        sum(p.top_label == r.intent for r, p in ins) / max(1, len(ins)),
        sum(p.label == OUT_OF_SCOPE for p in oos) / max(1, len(oos)),
    )


def _share_vectors() -> None:
    """Memoise ``intent_head.sentence_vectors`` by (text, max_length) for this process:
    the frozen base encoder gives a text the same vector in every recipe."""
    import numpy as np

    from core.training import intent_head

    plain = intent_head.sentence_vectors
    store: dict[tuple[str, int], Any] = {}

    def shared(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64) -> Any:
        missing = [t for t in dict.fromkeys(texts) if (t, max_length) not in store]
        if missing:
            vectors = plain(model, tokenizer, missing, max_length, batch_size)
            store.update({(t, max_length): v for t, v in zip(missing, vectors, strict=True)})
        return np.stack([store[(t, max_length)] for t in texts])

    intent_head.sentence_vectors = shared  # type: ignore[assignment]


def run(name: str, overrides: dict[str, Any], out: Path) -> dict[str, Any]:
    from dataclasses import replace

    from core.intents import IntentClassifier
    from core.training.intent import train_intent
    from core.training.out_of_scope import generate_topics

    folder = out / _slug(name)
    cfg: IntentTrainConfig = default_intent_config(folder)
    if overrides.get("oos_examples") == "OLD":
        topics = out / "oos-topics.txt"
        topics.write_text("\n".join(generate_topics(400, seed=cfg.seed)) + "\n", encoding="utf-8")
        overrides = overrides | {"oos_examples": str(topics)}
    cfg = replace(cfg, **overrides)
    started, cpu = time.perf_counter(), time.process_time()
    done = folder / "metrics.json"
    metrics = json.loads(done.read_text()) if done.is_file() else train_intent(cfg)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    clf = IntentClassifier.from_pretrained(folder, device="cpu")
    _, bitext_val = stratified_split(load_examples(BITEXT_CSV), cfg.validation_split, seed=cfg.seed)
    paraphrase = load_examples(PARAPHRASE_CSV)
    in_scope, top_label, oos_recall = _accuracy(clf, paraphrase)
    return {
        "recipe": name,
        "overrides": {k: v for k, v in overrides.items() if k != "oos_examples"},
        "n_train": metrics["n_train"],
        "bitext_val_accuracy": round(_accuracy(clf, bitext_val)[0], 4),
        "paraphrase_in_scope_accuracy": round(in_scope, 4),
        "paraphrase_top_label_accuracy": round(top_label, 4),
        "paraphrase_oos_recall": round(oos_recall, 4),
        "threshold": clf.threshold,
        "temperature": clf.temperature,
        "val_ece_before": round(metrics.get("val_ece_before", float("nan")), 4),
        "val_ece_after": round(metrics.get("val_ece", float("nan")), 4),
        "train_time_s": metrics.get("train_time_s"),
        "this_run_s": round(took, 1),
        "this_run_cpu_s": round(cpu, 1),  # all threads of this process; wall time depends on the load
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/bench/intent-recipes"))
    parser.add_argument("--only", nargs="*", default=None, help="recipe names (substrings) to run")
    parser.add_argument("--fine-tune", action="store_true", help="also the fine-tuned recipes (slow)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    _share_vectors()
    rows = []
    for name, overrides, slow in RECIPES:
        if (slow and not args.fine_tune) or (args.only and not any(o in name for o in args.only)):
            continue
        row = run(name, overrides, args.out)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| recipe | Bitext val | paraphrase in-scope (top label) | paraphrase OOS recall | threshold | T "
        "| val ECE before → after | train s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['bitext_val_accuracy']:.2%} | {r['paraphrase_in_scope_accuracy']:.1%} "
            f"({r['paraphrase_top_label_accuracy']:.1%}) | "
            f"{r['paraphrase_oos_recall']:.1%} | {r['threshold']:.2f} | {r['temperature']:.2f} | "
            f"{r['val_ece_before']:.3f} → {r['val_ece_after']:.3f} | {r['train_time_s']} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
