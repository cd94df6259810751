"""The Hugging Face ``Trainer`` set up once for both models.

What ``train_lm`` and ``train_intent`` share: the step count, AdamW with no decay on
biases/norms/embeddings, the warmup-then-decay schedule that also follows the time
budget, ``TrainingArguments`` (gradient accumulation, bf16/fp16 on CUDA from
``core/device.py``, length-grouped batches, evaluation and a checkpoint at each epoch
end or every ``eval_every`` steps, the best checkpoint loaded at the end, early
stopping), ``--resume`` and the loss curves read back from the Trainer's log.

Length-grouped batches come from our own sampler (:class:`LengthGroups`), because the
Trainer's ``group_by_length`` order made the default LM worse. What the Trainer does not
carry, and so is not here any more: a checkpoint written on
Ctrl-C (the run stops with one line; ``--resume`` continues from the checkpoint of the
last evaluation), and ``--device cuda:N`` (``--device cpu`` forces the CPU, otherwise the
Trainer takes the first visible GPU; choose one with ``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, get_last_checkpoint

from core.device import pick_device, pick_dtype
from core.errors import ChatbotError, ConfigError
from core.training.config import TrainConfig
from core.training.dialogues import length_grouped_batches

log = logging.getLogger(__name__)

# Parameter names without weight decay: biases, LayerNorms, GPT-2's token/position tables.
NO_DECAY = ("bias", "LayerNorm", "ln_", "norm", "wte", "wpe")


class TimeBudget(TrainerCallback):
    """Stops training once ``seconds`` have passed on ``clock`` (0 = no budget); the
    schedule reads :meth:`used` to finish its decay by then. The clock is read once at
    the start and once per step, so a test can drive it step by step."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.started = 0.0
        self.fraction = 0.0  # share of the budget used at the last step's end
        self.stopped = False

    def used(self) -> float:
        return self.fraction

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = self.clock()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if not self.seconds:
            return control
        self.fraction = (self.clock() - self.started) / self.seconds
        if self.fraction >= 1.0 and not control.should_training_stop:
            log.info("time budget of %.0fs used up at step %d", self.seconds, state.global_step)
            self.stopped = control.should_training_stop = True
            if args.eval_strategy == IntervalStrategy.STEPS:  # an epoch end evaluates anyway
                control.should_evaluate = control.should_save = True
        return control


class LengthGroups(torch.utils.data.Sampler[int]):
    """Batches of similar length (less padding) in a shuffled order, new each epoch
    (``set_epoch``, which the Trainer calls). The Trainer's own ``group_by_length``
    sampler orders every 50 batches longest first; that sawtooth of batch length over
    the epoch left the default LM at perplexity 4.5 instead of 4.1 (docs/lm-model.md)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        rng = random.Random(self.seed + self.epoch)
        return iter(
            [i for batch in length_grouped_batches(self.lengths, self.batch_size, rng) for i in batch]
        )


class _Trainer(Trainer):
    """The Trainer with :class:`LengthGroups` when batches are grouped by length."""

    def __init__(self, *args: Any, sampler: LengthGroups | None = None, **kwargs: Any) -> None:
        self.length_groups = sampler
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        return self.length_groups or super()._get_train_sampler(train_dataset)


def total_steps(cfg: TrainConfig, n_train: int) -> tuple[int, int]:
    """(optimizer steps per epoch, steps to run): the smaller of --epochs and --max-steps."""
    per_epoch = math.ceil(math.ceil(n_train / cfg.batch_size) / cfg.grad_accum)
    total = math.ceil(per_epoch * cfg.epochs) if cfg.epochs > 0 else cfg.max_steps
    return per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total


def optimizer(model: torch.nn.Module, cfg: TrainConfig, betas: tuple[float, float]) -> torch.optim.AdamW:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: every parameter is frozen")
    groups = [
        {
            "params": [p for n, p in params if not any(k in n for k in NO_DECAY)],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for n, p in params if any(k in n for k in NO_DECAY)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, betas=betas)


def schedule(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int, budget: TimeBudget
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then linear/cosine decay to 0 (or constant) over the steps, or over
    the time budget when that runs out first."""
    warmup = int(cfg.warmup_ratio * steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        done = min(1.0, max((step - warmup) / max(1, steps - warmup), budget.used()))
        if cfg.lr_scheduler == "linear":
            return 1.0 - done
        return 0.5 * (1.0 + math.cos(math.pi * done)) if cfg.lr_scheduler == "cosine" else 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def arguments(cfg: TrainConfig, steps: int, metric: str) -> TrainingArguments:
    device = pick_device(cfg.device)
    half = pick_dtype(device) if device.type == "cuda" and cfg.mixed_precision else None
    strategy = "steps" if cfg.eval_every else "epoch"
    return TrainingArguments(
        output_dir=str(cfg.checkpoints),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 32),
        gradient_accumulation_steps=cfg.grad_accum,
        max_steps=steps,
        max_grad_norm=cfg.max_grad_norm,
        label_names=["labels"],
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.eval_every or None,
        save_steps=cfg.eval_every or 500,
        save_total_limit=1,  # the best and the latest stay
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=metric != "loss",
        logging_steps=cfg.log_every,
        include_num_input_tokens_seen="non_padding",
        bf16=half == torch.bfloat16,
        fp16=half == torch.float16,
        use_cpu=device.type == "cpu",
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
    )


def build(
    cfg: TrainConfig,
    model: Any,
    train_set: list[dict[str, Any]],
    val_set: list[dict[str, Any]],
    *,
    metric: str,
    budget: TimeBudget,
    betas: tuple[float, float] = (0.9, 0.999),
    group_by_length: bool = False,
    **trainer_kwargs: Any,
) -> Trainer:
    """A Trainer with our optimizer, schedule, time budget and early stopping."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _, steps = total_steps(cfg, len(train_set))
    opt = optimizer(model, cfg, betas)
    callbacks: list[TrainerCallback] = [budget]
    if cfg.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.patience))
    lengths = [len(row["input_ids"]) for row in train_set]
    return _Trainer(
        model=model,
        args=arguments(cfg, steps, metric),
        sampler=LengthGroups(lengths, cfg.batch_size, cfg.seed) if group_by_length else None,
        train_dataset=train_set,  # any sized sequence of dicts works
        eval_dataset=val_set,
        optimizers=(opt, schedule(opt, cfg, steps, budget)),
        callbacks=callbacks,
        **trainer_kwargs,
    )


def last_checkpoint(cfg: TrainConfig) -> str | None:
    """The checkpoint ``--resume`` continues from; ConfigError when there is none."""
    if not cfg.resume:
        return None
    found = get_last_checkpoint(str(cfg.checkpoints)) if cfg.checkpoints.is_dir() else None
    if found is None:
        raise ConfigError(f"--resume: no checkpoint in {cfg.checkpoints}; start without --resume")
    return found


def run(trainer: Trainer, cfg: TrainConfig) -> None:
    """Train (resuming when asked); Ctrl-C becomes one line that says how to go on."""
    resume_from = last_checkpoint(cfg)
    if resume_from is None:  # a fresh run: an old run's checkpoints would confuse the rotation
        shutil.rmtree(cfg.checkpoints, ignore_errors=True)
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        raise ChatbotError(
            f"training interrupted at step {trainer.state.global_step}; --resume --output "
            f"{cfg.output_dir} continues from the last evaluation's checkpoint"
        ) from None


def finish(cfg: TrainConfig) -> None:
    if not cfg.keep_checkpoint:
        shutil.rmtree(cfg.checkpoints, ignore_errors=True)


def curve(trainer: Trainer, key: str) -> list[list[float]]:
    """``[[step, value], ...]`` of a logged figure (``loss``, ``eval_loss``, ...)."""
    return [[e["step"], round(e[key], 5)] for e in trainer.state.log_history if key in e]
