"""``chatbot train lm``: train the dialogue LM (GPT-2 family) on support conversations.

Shaped like Hugging Face's ``run_clm.py``: a typed config, data (Bitext CSV rows or
JSONL role-tagged conversations, rendered with :mod:`core.prompt`), a tokenizer and a
model (``core/training/lm_model.py``: a byte-level BPE and a GPT-2 preset from scratch,
or ``--base`` fine-tuned, optionally with LoRA), then ``transformers.Trainer``
(``core/training/trainer.py``): the model's own loss on reply tokens (prompt labels are
-100, averaged over the reply tokens of the whole accumulated step), length-grouped
batches, warmup + decay, early stopping on validation loss, resumable checkpoints.
The best checkpoint is saved with ``metrics.json``, ``loss-curve.png`` and
``model-card.md``. Generating sample replies is evaluation
(``core/evaluation/lm_report.py``), run by the CLI after training.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.prompt import Dialogue, mask_dialogue
from core.registry import write_metrics, write_model_card
from core.training import trainer as hf
from core.training.config import LMTrainConfig
from core.training.data import stratified_split
from core.training.dialogues import collate, encode_dialogues, load_dialogues, stratified_take
from core.training.lm_model import (
    count_params,
    freeze,
    load_base,
    scratch_model,
    train_tokenizer,
    with_lora,
)
from core.training.multi_turn import with_earlier_turns

log = logging.getLogger(__name__)


def split_dialogues(cfg: LMTrainConfig) -> tuple[list[Dialogue], list[Dialogue]]:
    """(train, validation), unmasked: the validation file, or a stratified split with the
    config's seed. Validation stays single-turn, so its loss compares across recipes."""
    data = load_dialogues(cfg.train_file, cfg.seed)
    if cfg.validation_file is not None:
        train, val = data, load_dialogues(cfg.validation_file, cfg.seed)
    else:
        train, val = stratified_split(data, cfg.validation_split, seed=cfg.seed)
    if cfg.limit and cfg.limit < len(train):
        train = stratified_take(train, cfg.limit, cfg.seed)
    if not train or not val:
        raise ConfigError("lm training needs at least one training and one validation example")
    return train, val


def training_examples(cfg: LMTrainConfig, train: list[Dialogue]) -> list[Dialogue]:
    """The training split with ``cfg.multi_turn`` of it given earlier turns."""
    return with_earlier_turns(train, cfg.multi_turn, seed=cfg.seed) if cfg.multi_turn else train


def _model_and_tokenizer(
    cfg: LMTrainConfig, train: list[Dialogue], resume_from: str | None
) -> tuple[Any, Any]:
    new_ids: list[int] = []
    if cfg.base:
        model, tokenizer, new_ids = load_base(cfg.base)
    else:
        if resume_from:  # the checkpoint's tokenizer, not a new one
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(resume_from, local_files_only=True)
        else:
            masked = [mask_dialogue(d) for d in train]  # "{{Reference 1}}" as the model sees it
            texts = [t for d in masked for t in (d.text, d.reply, d.system, d.intent)]
            tokenizer = train_tokenizer(texts + [t.text for d in masked for t in d.history], cfg.vocab_size)
        model = scratch_model(cfg.preset, tokenizer, cfg.max_length, cfg.dropout)
    freeze(model, embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
    if cfg.lora_r:
        model = with_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, new_ids)
    return model, tokenizer


def _trainer(
    cfg: LMTrainConfig,
    model: Any,
    tokenizer: Any,
    window: int,
    data: tuple[list[Dialogue], list[Dialogue]],
    budget: hf.TimeBudget,
) -> Any:
    """The Trainer on reply-masked examples: length-grouped batches, AdamW betas (0.9, 0.95)."""

    def dataset(dialogues: list[Dialogue]) -> list[dict[str, Any]]:
        return [{"input_ids": i, "labels": lab} for i, lab in encode_dialogues(tokenizer, dialogues, window)]

    pad_id = tokenizer.pad_token_id
    return hf.build(
        cfg,
        model,
        dataset(data[0]),
        dataset(data[1]),
        metric="loss",
        budget=budget,
        betas=(0.9, 0.95),
        group_by_length=True,
        processing_class=tokenizer,
        data_collator=lambda rows: collate([(r["input_ids"], r["labels"]) for r in rows], pad_id),
    )


def train_lm(cfg: LMTrainConfig, *, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Train, keep the best checkpoint by validation loss, save it; return the metrics."""
    from transformers import set_seed

    started = time.perf_counter()
    set_seed(cfg.seed)
    train, val = split_dialogues(cfg)
    train = training_examples(cfg, train)
    model, tokenizer = _model_and_tokenizer(cfg, train, hf.last_checkpoint(cfg))
    sizes = count_params(model)
    window = min(
        cfg.max_length, getattr(model.config, "n_positions", 0) or model.config.max_position_embeddings
    )
    log.info(
        "lm training: %d train / %d validation, %.2fM params", len(train), len(val), sizes["params"] / 1e6
    )

    budget = hf.TimeBudget(cfg.time_budget_s, clock)
    trainer = _trainer(cfg, model, tokenizer, window, (train, val), budget)
    hf.run(trainer, cfg)
    train_time = time.perf_counter() - started
    state = trainer.state
    per_epoch, planned = hf.total_steps(cfg, len(train))
    metrics: dict[str, Any] = {
        "val_loss": round(state.best_metric or math.inf, 5),
        "val_perplexity": round(math.exp(min(state.best_metric or math.inf, 50)), 3),
        "best_step": state.best_global_step,
        "steps": state.global_step,
        "epochs": round(state.global_step / per_epoch, 3),
        "stopped_early": state.global_step < planned and not budget.stopped,
        "stopped_by_time_budget": budget.stopped,
        "train_time_s": round(train_time, 1),
        "tokens_per_s": round(state.num_input_tokens_seen / max(train_time, 1e-9), 1),
        "n_train": len(train),
        "n_train_multi_turn": sum(1 for d in train if d.history),
        "n_validation": len(val),
        "vocab_size": len(tokenizer),
        "context_window": window,
        **sizes,
        "train_loss_curve": hf.curve(trainer, "loss"),
        "val_loss_curve": hf.curve(trainer, "eval_loss"),
    }
    curve = metrics["train_loss_curve"]
    metrics["first_train_loss"], metrics["last_train_loss"] = (
        (curve[0][1], curve[-1][1]) if curve else (None, None)
    )
    _save(trainer.model, tokenizer, cfg, metrics)
    hf.finish(cfg)
    log.info("saved %s: val loss %.4f, %.0fs", cfg.output_dir, metrics["val_loss"], train_time)
    return metrics


def _save(model: Any, tokenizer: Any, cfg: LMTrainConfig, metrics: dict[str, Any]) -> None:
    """The best weights as a plain causal-LM folder (LoRA merged), with its report files."""
    out = Path(cfg.output_dir)
    if cfg.lora_r:
        model = model.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "lm_training.json").write_text(json.dumps(_jsonable(asdict(cfg)), indent=2), encoding="utf-8")
    plot_loss_curve(out / "loss-curve.png", metrics["train_loss_curve"], metrics["val_loss_curve"])
    save_report(cfg, metrics)


def plot_loss_curve(path: Path, train_curve: list[list[float]], val_curve: list[list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train_curve:
        ax.plot(*zip(*train_curve, strict=False), label="train (reply tokens)")
    if val_curve:
        ax.plot(*zip(*val_curve, strict=False), "o-", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value


CARD_METRICS = (
    "val_loss",
    "val_perplexity",
    "eval_perplexity",
    "sample_rouge_l",
    "sample_bleu",
    "sample_distinct_2",
    "steps",
    "epochs",
    "train_time_s",
    "build_time_s",
    "tokens_per_s",
    "params",
    "trainable_params",
    "vocab_size",
    "context_window",
)


def save_report(cfg: LMTrainConfig, metrics: dict[str, Any]) -> None:
    """``metrics.json`` and ``model-card.md`` (again after the CLI's evaluation adds figures)."""
    out = Path(cfg.output_dir)
    write_metrics(out, metrics)
    write_model_card(
        out,
        kind="lm",
        title=f"Dialogue LM {out.name}",
        sections={
            "Data": {
                "train_file": str(cfg.train_file),
                "train examples": metrics["n_train"],
                "validation examples": metrics["n_validation"],
            },
            "Base": cfg.base
            or f"GPT-2 `{cfg.preset}` preset trained from scratch with a byte-level BPE tokenizer",
            "Prompt format": "`<|system|>style<|intent|>intent<|user|>…<|end|><|bot|>…<|end|>`",
            "Metrics": {k: metrics[k] for k in CARD_METRICS if k in metrics},
            "Options": _jsonable(asdict(cfg)),
            "Files": "loss-curve.png (train/validation loss), eval/lm-samples.md (replies), metrics.json",
        },
    )
