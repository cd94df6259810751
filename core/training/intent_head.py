"""The frozen-encoder recipe: a logistic-regression head on MiniLM's sentence vectors.

The bundled MiniLM was trained so that sentences meaning the same thing get nearby
mean-pooled vectors. Keeping it frozen and fitting only a linear head on those
(L2-normalised) vectors generalises to wordings the training data never used better
than fine-tuning the whole encoder on template-like data (docs/intent-model.md has
the comparison), and it trains in the time one forward pass over the data takes:
the vectors are computed once, then scikit-learn's L-BFGS fits the head in seconds.
The fitted weights become the linear layer of a
:class:`~core.pooled_classifier.MeanPoolForSequenceClassification`, so the saved
folder loads and runs like any other intent model.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from core.device import pick_device
from core.training.config import IntentTrainConfig
from core.training.data import Example

log = logging.getLogger(__name__)


@torch.inference_mode()
def sentence_vectors(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64
) -> np.ndarray:
    """(N, H) normalised mean-pooled vectors in input order (batches of similar length)."""
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc="sentence vectors", unit="batch", leave=False):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        pooled = model.pooled(enc["input_ids"], enc["attention_mask"])
        out[idx] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
    return out


def fit_frozen_head(
    cfg: IntentTrainConfig,
    model: Any,
    tokenizer: Any,
    train: list[Example],
    val: list[Example],
    label2id: dict[str, int],
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Fit ``model.classifier`` on the frozen encoder's vectors of ``train``; return the
    validation logits (N, C) and what the fit did."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model.config.normalize = True  # the head reads unit vectors, at training and at run time
    model.to(pick_device(cfg.device)).eval()
    started = time.perf_counter()
    x_train = sentence_vectors(model, tokenizer, [e.text for e in train], cfg.max_length)
    x_val = sentence_vectors(model, tokenizer, [e.text for e in val], cfg.max_length)
    encoded_s = time.perf_counter() - started
    y = np.array([label2id[e.intent] for e in train])
    head = LogisticRegression(C=cfg.head_c, max_iter=5000, random_state=cfg.seed)
    head.fit(x_train, y)  # every label has training examples: the labels come from them
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(head.coef_).float())
        model.classifier.bias.copy_(torch.from_numpy(head.intercept_).float())
    model.cpu()
    logits = torch.from_numpy(x_val @ head.coef_.T + head.intercept_).float()
    info = {"encode_s": round(encoded_s, 1), "fit_s": round(time.perf_counter() - started - encoded_s, 1)}
    log.info(
        "frozen-encoder head: %d vectors in %.0fs, head fitted in %.1fs",
        len(train) + len(val),
        *info.values(),
    )
    return logits, info
