"""Evaluate an intent model on labelled examples and write a report a person can read.

``evaluate_intent`` writes ``intent-report.json``, ``intent-report.md``,
``confusion.png`` and ``reliability.png`` into ``out_dir``, and ``oos-tradeoff.png``
(in-scope accuracy against OOS recall over thresholds) when the data has
``out_of_scope`` examples and the model exposes its probabilities. In-scope figures
count an in-scope message answered OUT_OF_SCOPE as wrong; OOS recall is reported beside
them when the data has ``out_of_scope`` examples.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from core.errors import ConfigError
from core.intents import decide
from core.protocols import OUT_OF_SCOPE, IntentModel
from core.training.data import Example
from core.training.oos_threshold import tradeoff_curve

log = logging.getLogger(__name__)


def classification_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label P/R/F1 over the *gold* label set (a predicted
    label that never occurs in gold, e.g. OUT_OF_SCOPE, only costs recall)."""
    labels = sorted(set(gold))
    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "per_intent": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
            for i, lab in enumerate(labels)
        },
    }


def most_confused(cm: np.ndarray, labels: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The k largest off-diagonal cells: (gold, predicted, count), largest first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    cells = [(int(off[i, j]), labels[i], labels[j]) for i, j in zip(*np.nonzero(off), strict=True)]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"gold": g, "predicted": p, "count": c} for c, g, p in cells[:k]]


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict[str, Any]:
    """Equal-width confidence bins: mean confidence vs accuracy per bin, and the
    expected calibration error (bin-size-weighted |accuracy - confidence|)."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)  # bin index per example
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        acc, mean_conf = float(ok[mask].mean()), float(conf[mask].mean())
        ece += mask.sum() / len(conf) * abs(acc - mean_conf)
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(mask.sum()),
                "confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return {"bins": rows, "ece": float(ece)}


def _plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(6.0, 0.22 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # row-normalised: recall per gold intent
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("Confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_reliability(rel: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    mids = [(b["low"] + b["high"]) / 2 for b in rel["bins"]]
    ax.bar(mids, [b["accuracy"] for b in rel["bins"]], width=0.09, alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.plot(
        [b["confidence"] for b in rel["bins"]],
        [b["accuracy"] for b in rel["bins"]],
        "o-",
        color="C1",
        label="model",
    )
    ax.set_xlabel("confidence (top in-scope probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {rel['ece']:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tradeoff(curves: dict[str, Sequence[dict[str, float]]], chosen: float, path: Path) -> None:
    """In-scope accuracy against OOS recall, one line per named curve (a point per
    threshold), the model's own threshold marked on each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    lows = [1.0, 1.0]
    for colour, (name, curve) in enumerate(curves.items()):
        recall = [p["oos_recall"] for p in curve]
        accuracy = [p["in_scope_accuracy"] for p in curve]
        lows = [min(lows[0], *recall), min(lows[1], *accuracy)]
        ax.plot(recall, accuracy, "-", color=f"C{colour}", lw=1.5, label=name)
        for t in (0.0, 0.5, 0.75, 0.9):
            p = min(curve, key=lambda q: abs(q["threshold"] - t))
            ax.annotate(f"{t:.2f}", (p["oos_recall"], p["in_scope_accuracy"]), fontsize=7, color=f"C{colour}")
        at = min(curve, key=lambda q: abs(q["threshold"] - chosen))
        ax.plot([at["oos_recall"]], [at["in_scope_accuracy"]], "o", color=f"C{colour}")
    # never zoom in so far that a few messages look like a cliff
    ax.set_xlim(min(0.9, lows[0] - 0.02), 1.005)
    ax.set_ylim(min(0.9, lows[1] - 0.02), 1.005)
    ax.set_xlabel("OOS recall")
    ax.set_ylabel("in-scope accuracy")
    ax.set_title(f"Out-of-scope trade-off over thresholds 0.00-0.99 (dots: {chosen:.2f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _predict(model: IntentModel, texts: list[str], batch_size: int) -> tuple[list[Any], Any]:
    """Predictions, and the probability matrix when the model exposes one (for the curve)."""
    probabilities = getattr(model, "probabilities", None)
    if callable(probabilities) and hasattr(model, "oos_index") and hasattr(model, "classes"):
        probs = probabilities(texts, batch_size=batch_size)
        return decide(probs, model.classes, model.oos_index, float(getattr(model, "threshold", 0.0))), probs
    try:
        return model.predict(texts, batch_size=batch_size), None  # type: ignore[call-arg]
    except TypeError:
        return model.predict(texts), None


def evaluate_intent(
    model: IntentModel,
    examples: Sequence[Example],
    out_dir: Path | str,
    batch_size: int = 32,
    validation_curve: Sequence[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Run ``model`` on ``examples`` and write the report files; return the report dict.
    ``validation_curve`` (``metrics.json``'s ``oos_curve``) is drawn beside this data's."""
    if not examples:
        raise ConfigError("evaluation data has no examples")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preds, probs = _predict(model, [e.text for e in examples], batch_size)
    gold = [e.intent for e in examples]
    unknown = sorted({g for g in gold if g != OUT_OF_SCOPE} - set(model.labels))
    if unknown and len(unknown) == len({g for g in gold if g != OUT_OF_SCOPE}):
        raise ConfigError(
            f"none of the data's intents are known to the model (e.g. {unknown[0]!r}); wrong data or model?"
        )

    ins = [i for i, g in enumerate(gold) if g != OUT_OF_SCOPE]
    oos = [i for i, g in enumerate(gold) if g == OUT_OF_SCOPE]
    report: dict[str, Any] = {"n_examples": len(examples), "n_in_scope": len(ins), "n_out_of_scope": len(oos)}
    if unknown:
        report["unknown_intents"] = unknown
    if ins:
        g_in = [gold[i] for i in ins]
        report.update(classification_scores(g_in, [preds[i].label for i in ins]))
        report["in_scope_accuracy"] = report["accuracy"]
        # the classifier alone, without the OOS rule (what a paper's accuracy means)
        report["top_label_accuracy"] = float(accuracy_score(g_in, [preds[i].top_label for i in ins]))
        report["rejected_in_scope_rate"] = sum(preds[i].label == OUT_OF_SCOPE for i in ins) / len(ins)
        rel = reliability([preds[i].confidence for i in ins], [preds[i].top_label == gold[i] for i in ins])
        report["calibration"] = rel
        _plot_reliability(rel, out / "reliability.png")
    if oos:
        report["oos_recall"] = sum(preds[i].label == OUT_OF_SCOPE for i in oos) / len(oos)
        flagged = [i for i, p in enumerate(preds) if p.label == OUT_OF_SCOPE]
        report["oos_precision"] = sum(gold[i] == OUT_OF_SCOPE for i in flagged) / max(1, len(flagged))
        report["overall_accuracy"] = float(accuracy_score(gold, [p.label for p in preds]))
        if probs is not None:
            curve = tradeoff_curve(probs, gold, model.classes, model.oos_index)  # type: ignore[attr-defined]
            report["oos_curve"] = curve
            curves = {"validation (training run)": validation_curve} if validation_curve else {}
            curves["this data"] = curve
            plot_tradeoff(curves, float(getattr(model, "threshold", 0.0)), out / "oos-tradeoff.png")
    all_labels = sorted(set(gold) | {p.label for p in preds})
    cm = confusion_matrix(gold, [p.label for p in preds], labels=all_labels)
    report["most_confused"] = most_confused(cm, all_labels)
    report["confusion_labels"] = all_labels
    report["confusion_matrix"] = cm.tolist()
    _plot_confusion(cm, all_labels, out / "confusion.png")
    (out / "intent-report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "intent-report.md").write_text(_markdown(report), encoding="utf-8")
    log.info("intent report written to %s", out)
    return report


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Intent evaluation",
        "",
        f"- examples: {r['n_examples']} ({r['n_in_scope']} in scope, {r['n_out_of_scope']} out of scope)",
    ]
    for key in (
        "accuracy",
        "macro_f1",
        "top_label_accuracy",
        "rejected_in_scope_rate",
        "oos_recall",
        "oos_precision",
        "overall_accuracy",
    ):
        if key in r:
            lines.append(f"- {key.replace('_', ' ')}: {r[key]:.4f}")
    if "calibration" in r:
        lines.append(f"- expected calibration error: {r['calibration']['ece']:.4f}")
    lines += [
        "",
        "![confusion](confusion.png) ![reliability](reliability.png)"
        + (" ![OOS trade-off](oos-tradeoff.png)" if "oos_curve" in r else ""),
        "",
        "## Most confused pairs",
        "",
        "| gold | predicted | count |",
        "|---|---|---|",
    ]
    lines += [f"| {c['gold']} | {c['predicted']} | {c['count']} |" for c in r["most_confused"]]
    if "per_intent" in r:
        lines += [
            "",
            "## Per intent",
            "",
            "| intent | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
            for k, v in r["per_intent"].items()
        ]
    return "\n".join(lines) + "\n"
