"""Temperature scaling: one number, fitted on validation logits, that makes the
classifier's probabilities mean what they say (Guo et al., 2017).

A fine-tuned classifier is usually over-confident: 0.95 from the softmax is right less
than 95% of the time. The router compares the confidence with the persona's
``confidence_threshold``, so the number should be a probability. Dividing the logits
by a temperature T > 0 keeps every argmax (predictions do not change) and only
reshapes the confidence; T is chosen to minimise the validation negative
log-likelihood, stored in ``chatbot_intent.json`` and applied by ``IntentClassifier``.
"""

from __future__ import annotations

import math

import torch

from core.evaluation.intent_report import reliability


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, steps: int = 200) -> float:
    """The T that minimises mean NLL of ``softmax(logits / T)`` for ``targets`` (N,).
    Optimised over log T (so T stays positive) with L-BFGS; 1.0 without data."""
    if len(targets) == 0:
        return 1.0
    logits = logits.detach().float()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if math.isfinite(t) else 1.0


def calibration_error(probs: torch.Tensor, targets: torch.Tensor, oos_index: int | None) -> float:
    """ECE of the top *in-scope* probability (what the router reads) over the rows
    whose target is an in-scope intent; 10 equal-width bins."""
    keep = targets != oos_index if oos_index is not None else torch.ones_like(targets, dtype=torch.bool)
    p = probs[keep].clone()
    if oos_index is not None:
        p[:, oos_index] = -1.0
    conf, pred = p.max(dim=-1)
    return float(reliability(conf.tolist(), (pred == targets[keep]).tolist())["ece"]) if len(p) else 0.0
