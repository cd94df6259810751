"""The BERT-architecture intent classifier used by the engine.

A model folder is what ``chatbot train intent`` writes: a Hugging Face sequence
classifier + tokenizer, and ``chatbot_intent.json`` with the out-of-scope rule chosen
on validation data (see docs/intent-model.md):

    {"oos_method": "class" | "threshold" | "both" | "none",
     "threshold": 0.42,            # top in-scope probability below this -> out of scope
     "oos_label": "out_of_scope",  # the trained OOS class, or null
     "max_length": 48,
     "pooling": "mean",            # sentence vector: "cls" (AutoModelForSequenceClassification) or "mean"
     "temperature": 1.7}           # logits / T before the softmax (temperature scaling)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from core.device import pick_device, pick_dtype
from core.errors import ModelMissing
from core.protocols import OUT_OF_SCOPE, IntentPrediction
from core.quantize import apply_saved_quantization

log = logging.getLogger(__name__)

OOS_FILE = "chatbot_intent.json"
DEFAULT_MAX_LENGTH = 64


def decide(
    probs: torch.Tensor, labels: Sequence[str], oos_index: int | None, threshold: float
) -> list[IntentPrediction]:
    """Apply the out-of-scope rule to a (B, C) probability matrix.

    ``confidence`` is the probability of the best *in-scope* intent; the answer is
    OUT_OF_SCOPE when the trained OOS class wins or that probability is below
    ``threshold``. Shared by inference and by the threshold search in training, so
    the rule chosen on validation data is exactly the rule applied at run time."""
    in_scope = probs.clone()
    if oos_index is not None:
        in_scope[:, oos_index] = -1.0  # never the "best in-scope" intent
    top_p, top_i = in_scope.max(dim=-1)  # (B,), (B,)
    winners = probs.argmax(dim=-1)  # (B,)
    out = []
    for p, i, w in zip(top_p.tolist(), top_i.tolist(), winners.tolist(), strict=True):
        top = labels[i]
        is_oos = (oos_index is not None and w == oos_index) or p < threshold
        out.append(IntentPrediction(OUT_OF_SCOPE if is_oos else top, float(p), top))
    return out


def read_oos_config(folder: Path) -> dict[str, Any]:
    """The folder's OOS rule; no file means "no OOS detection"."""
    path = folder / OOS_FILE
    if not path.is_file():
        return {"oos_method": "none", "threshold": 0.0, "oos_label": None}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        float(data.get("threshold", 0.0))
        if float(data.get("temperature", 1.0) or 1.0) <= 0:
            raise ValueError("temperature must be > 0")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelMissing(
            f"{path} is unreadable ({exc.__class__.__name__}); rebuild the model with "
            f"`chatbot train intent --output {folder}`"
        ) from exc
    return data


class IntentClassifier:
    """Tokenizer + sequence classifier + the OOS rule, loaded once, run in batches."""

    def __init__(self, model: Any, tokenizer: Any, oos: dict[str, Any], device: torch.device) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        id2label = model.config.id2label
        self._all_labels = [id2label[i] for i in range(len(id2label))]
        oos_label = oos.get("oos_label")
        self.oos_index = self._all_labels.index(oos_label) if oos_label in self._all_labels else None
        self.threshold = float(oos.get("threshold", 0.0) or 0.0)
        self.max_length = int(oos.get("max_length", DEFAULT_MAX_LENGTH))
        self.oos_method = str(oos.get("oos_method", "none"))
        # fitted on validation data so the confidence is a probability (calibration.py)
        self.temperature = float(oos.get("temperature", 1.0) or 1.0)
        # the intents a caller can route on (the trained OOS class is not one of them)
        self.labels: list[str] = [lab for i, lab in enumerate(self._all_labels) if i != self.oos_index]

    @property
    def classes(self) -> list[str]:
        """Every trained class in the order of the probability columns (the labels and
        a trained OOS class)."""
        return list(self._all_labels)

    @classmethod
    def from_pretrained(cls, path: Path | str, device: str | None = None) -> IntentClassifier:
        """Load a local folder (never the hub); missing or corrupt -> ModelMissing."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path)
        how = f"build it with `chatbot train intent --output {folder}`"
        if not (folder / "config.json").is_file():
            raise ModelMissing(f"intent model folder {folder} is missing or has no config.json; {how}")
        oos = read_oos_config(folder)
        dev = pick_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            head = AutoModelForSequenceClassification
            if oos.get("pooling") == "mean":
                from core.pooled_classifier import MeanPoolForSequenceClassification as head  # type: ignore[assignment]
            model = head.from_pretrained(folder, local_files_only=True, dtype=pick_dtype(dev))
        except Exception as exc:  # corrupt weights, missing tokenizer files, bad JSON
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelMissing(
                f"intent model at {folder} does not load ({exc.__class__.__name__}: {first}); {how}"
            ) from exc
        model = apply_saved_quantization(model.to(dev).eval(), folder, dev)  # a `models quantize` folder
        log.info(
            "intent model %s loaded on %s (%d labels, oos=%s)",
            folder,
            dev,
            model.config.num_labels,
            oos.get("oos_method"),
        )
        return cls(model, tokenizer, oos, dev)

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(N, C) softmax of the logits / temperature over all trained classes, in input
        order, float32 on CPU."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        out = torch.empty(len(texts), len(self._all_labels))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            logits = self.model(**enc).logits  # (b, C)
            out[idx] = (logits.float() / self.temperature).softmax(dim=-1).cpu()
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[IntentPrediction]:
        """Top in-scope intent, its probability, and OUT_OF_SCOPE when the rule says so."""
        if not texts:
            return []
        probs = self.probabilities(list(texts), batch_size=batch_size)
        return decide(probs, self._all_labels, self.oos_index, self.threshold)
