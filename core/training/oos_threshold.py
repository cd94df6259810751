"""The out-of-scope threshold, chosen on validation data after training.

Rule (docs/intent-model.md): over t in {0.00, 0.01, ..., 0.99}, maximise OOS recall
while in-scope accuracy stays within ``max_accuracy_loss`` (default 0.01, one point)
of its value at t = 0; ties go to the lowest t, which rejects fewest real requests.
A support desk would rather ask a few off-topic customers to rephrase than turn away
real requests, so the loss of real answers is capped rather than traded one for one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.intents import decide
from core.protocols import OUT_OF_SCOPE

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.0, 1.0, 0.01), 2))
OOS_RULE = "maximise OOS recall on validation, losing at most {loss:.1%} of in-scope accuracy to it"


def tradeoff_curve(
    probs: torch.Tensor,
    gold: list[str],
    labels: list[str],
    oos_index: int | None,
    thresholds: tuple[float, ...] = THRESHOLDS,
) -> list[dict[str, float]]:
    """In-scope accuracy and OOS recall at each threshold (the rule of ``decide``,
    vectorised): one point per threshold, lowest first."""
    in_scope = probs.clone()
    if oos_index is not None:
        in_scope[:, oos_index] = -1.0
    top_p, top_i = in_scope.max(dim=-1)  # (N,)
    class_oos = (
        probs.argmax(dim=-1) == oos_index
        if oos_index is not None
        else torch.zeros_like(top_p, dtype=torch.bool)
    )
    gold_i = torch.tensor([labels.index(g) if g in labels else -1 for g in gold])
    is_oos = torch.tensor([g == OUT_OF_SCOPE for g in gold])
    right_label = top_i == gold_i
    points = []
    for t in thresholds:
        rejected = class_oos | (top_p < t)
        points.append(
            {
                "threshold": t,
                "in_scope_accuracy": float((right_label & ~rejected)[~is_oos].float().mean())
                if (~is_oos).any()
                else 0.0,
                "oos_recall": float(rejected[is_oos].float().mean()) if is_oos.any() else 0.0,
            }
        )
    return points


def choose_threshold(
    probs: torch.Tensor,
    gold: list[str],
    labels: list[str],
    oos_index: int | None,
    max_accuracy_loss: float = 0.01,
) -> dict[str, Any]:
    """The lowest threshold with the highest OOS recall among those that keep in-scope
    accuracy within ``max_accuracy_loss`` of the accuracy at threshold 0. Validation
    data without OOS examples gives 0 (nothing to gain from rejecting)."""
    curve = tradeoff_curve(probs, gold, labels, oos_index)
    floor = curve[0]["in_scope_accuracy"] - max_accuracy_loss - 1e-9
    best = curve[0]
    for point in curve:
        if point["in_scope_accuracy"] >= floor and point["oos_recall"] > best["oos_recall"] + 1e-9:
            best = point
    return {**best, "max_accuracy_loss": max_accuracy_loss, "curve": curve}


def oos_scores(
    probs: torch.Tensor, gold: list[str], labels: list[str], oos_index: int | None, threshold: float
) -> dict[str, float]:
    preds = [p.label for p in decide(probs, labels, oos_index, threshold)]
    ins = [(p, g) for p, g in zip(preds, gold, strict=True) if g != OUT_OF_SCOPE]
    oos = [p for p, g in zip(preds, gold, strict=True) if g == OUT_OF_SCOPE]
    return {
        "in_scope_accuracy": sum(p == g for p, g in ins) / max(1, len(ins)),
        "oos_recall": sum(p == OUT_OF_SCOPE for p in oos) / max(1, len(oos)),
    }
