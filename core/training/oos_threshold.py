"""The out-of-scope threshold, chosen on validation data after training.

Rule (docs/intent-model.md): maximise 0.5 * in-scope accuracy + 0.5 * OOS recall over
t in {0.00, 0.01, ..., 0.99}; ties go to the lowest t, which rejects fewest real requests.
"""

from __future__ import annotations

import numpy as np
import torch

from core.intents import decide
from core.protocols import OUT_OF_SCOPE


def choose_threshold(
    probs: torch.Tensor, gold: list[str], labels: list[str], oos_index: int | None
) -> dict[str, float]:
    """Pick the threshold that maximises 0.5 * in-scope accuracy + 0.5 * OOS recall on
    validation data (ties -> the lowest threshold, which rejects fewest real requests)."""
    best: dict[str, float] = {}
    for t in np.round(np.arange(0.0, 1.0, 0.01), 2):
        m = oos_scores(probs, gold, labels, oos_index, float(t))
        score = 0.5 * m["in_scope_accuracy"] + 0.5 * m["oos_recall"]
        if not best or score > best["score"] + 1e-9:
            best = {"threshold": float(t), "score": score, **m}
    return best


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
