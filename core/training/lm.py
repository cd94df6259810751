"""``chatbot train lm``: train the dialogue LM (GPT-2 family) on support conversations.

Shaped like Hugging Face's ``run_clm.py``: a typed config, data (Bitext CSV rows or
JSONL role-tagged conversations, rendered with :mod:`core.prompt`), a tokenizer
(a byte-level BPE trained on the data, or the base model's), a model (a GPT-2 preset
from scratch, or ``--base`` fine-tuned, optionally with LoRA), a plain PyTorch loop
(loss on reply tokens only, length-grouped batches, warmup + decay, accumulation,
early stopping on validation loss, resumable checkpoints) and saving the best
checkpoint with ``metrics.json``, ``loss-curve.png`` and ``model-card.md``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from core.device import pick_device, pick_dtype
from core.errors import ChatbotError, ConfigError
from core.prompt import EOS, IGNORE_INDEX, PAD, ROLE_TOKENS, Dialogue, ensure_special_tokens
from core.registry import write_metrics, write_model_card
from core.training.data import BITEXT_CSV, stratified_split
from core.training.dialogues import (
    collate,
    encode_dialogues,
    length_grouped_batches,
    load_dialogues,
    stratified_take,
)

log = logging.getLogger(__name__)

SCHEDULERS = ("linear", "cosine", "constant")
# (n_layer, n_embd, n_head): tiny for tests, small for the 2-core default, base = GPT-2 124M.
PRESETS: dict[str, tuple[int, int, int]] = {"tiny": (2, 64, 2), "small": (4, 256, 4), "base": (12, 768, 12)}
CHECKPOINT = "checkpoint"


@dataclass
class LMTrainConfig:
    train_file: Path = BITEXT_CSV
    output_dir: Path = Path("models/lm-default")
    base: str = ""  # "" = from scratch with `preset`; else an HF name or a local folder
    preset: str = "small"  # tiny | small | base (from scratch only)
    validation_file: Path | None = None
    validation_split: float = 0.05  # used when validation_file is None (stratified by intent)
    max_length: int = 256  # tokens per example (prompt + reply); also n_positions from scratch
    vocab_size: int = 8000  # BPE vocabulary from scratch (the data may yield fewer)
    epochs: float = 3.0
    max_steps: int = 0  # >0 stops after this many optimizer steps
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"  # linear | cosine | constant (after warmup)
    weight_decay: float = 0.01
    dropout: float = 0.1  # from scratch: residual/embedding/attention dropout
    max_grad_norm: float = 1.0
    time_budget_s: float = (
        0.0  # >0: stop after this many seconds; the LR decays by step or time, whichever is further
    )
    eval_every: int = 0  # evaluate every N optimizer steps; 0 = at each epoch end
    patience: int = 2  # evaluations without a better val loss before stopping; 0 = off
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # freeze the lowest N transformer blocks
    lora_r: int = 0  # >0 trains LoRA adapters (peft) instead of all weights; merged at save
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: str = ""  # comma-separated module names; "" = the attention projections
    mixed_precision: bool = True  # autocast bf16/fp16, CUDA only
    resume: bool = False  # continue from output_dir/checkpoint
    keep_checkpoint: bool = False  # keep output_dir/checkpoint after a finished run
    seed: int = 13
    limit: int = 0  # >0 keeps at most this many training examples
    threads: int = 0  # CPU threads for torch; 0 = all cores
    device: str | None = None
    eval_samples: int = 24  # replies generated on validation data for ROUGE/BLEU (0 = off)
    log_every: int = 25
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, copied to the model card

    def validate(self) -> None:
        checks = [
            (self.max_length >= 16, "max_length must be >= 16"),
            (self.epochs > 0 or self.max_steps > 0, "epochs or max_steps must be > 0"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.time_budget_s >= 0, "time_budget_s must be >= 0"),
            (self.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.base or self.preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}"),
            (
                self.validation_file is not None or 0 < self.validation_split < 1,
                "validation_split must be between 0 and 1",
            ),
            (self.vocab_size >= 300, "vocab_size must be >= 300 (256 bytes + merges + special tokens)"),
            (
                min(
                    self.freeze_layers,
                    self.patience,
                    self.max_steps,
                    self.limit,
                    self.lora_r,
                    self.eval_every,
                    self.threads,
                    self.eval_samples,
                )
                >= 0,
                "counts (freeze_layers, patience, max_steps, limit, lora_r, "
                "eval_every, threads, eval_samples) must be >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"lm training: {message}")


def default_lm_config(output_dir: Path | str) -> LMTrainConfig:
    """The `chatbot models build` recipe: Bitext from scratch, ``small`` preset,
    about 8 minutes on a 2-core CPU (docs/lm-model.md has the measurement)."""
    return LMTrainConfig(
        train_file=BITEXT_CSV,
        output_dir=Path(output_dir),
        preset="small",
        max_length=256,
        vocab_size=8000,
        epochs=2.3,
        batch_size=16,
        learning_rate=2e-3,
        warmup_ratio=0.03,
        lr_scheduler="cosine",
        dropout=0.0,
        patience=0,
        eval_samples=24,
        time_budget_s=450,
    )


# ---------------------------------------------------------------- data


def _split(cfg: LMTrainConfig) -> tuple[list[Dialogue], list[Dialogue]]:
    data = load_dialogues(cfg.train_file, cfg.seed)
    if cfg.validation_file is not None:
        train, val = data, load_dialogues(cfg.validation_file, cfg.seed)
    else:
        train, val = stratified_split(data, cfg.validation_split, seed=cfg.seed)  # type: ignore[arg-type]
    if cfg.limit and cfg.limit < len(train):
        train = stratified_take(train, cfg.limit, cfg.seed)
    if not train or not val:
        raise ConfigError("lm training needs at least one training and one validation example")
    return train, val  # type: ignore[return-value]


def summed_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of next-token cross-entropy over reply tokens, number of reply tokens)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    targets = batch["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at t
    keep = targets != IGNORE_INDEX
    loss = torch.nn.functional.cross_entropy(logits[:, :-1][keep].float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


@torch.inference_mode()
def reply_loss(
    model: Any,
    encoded: list[tuple[list[int], list[int]]],
    pad_id: int,
    device: torch.device,
    batch_size: int = 32,
) -> float:
    """Mean cross-entropy per reply token (exp of it is the perplexity)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    for s in range(0, len(order), batch_size):
        batch = collate([encoded[i] for i in order[s : s + batch_size]], pad_id)
        loss, n = summed_loss(model, {k: v.to(device) for k, v in batch.items()})
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


# ---------------------------------------------------------------- tokenizer + model


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE on the training texts, wrapped as a GPT-2 tokenizer with the
    prompt tokens (saved with the model, loaded by AutoTokenizer)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS, PAD, *ROLE_TOKENS],
        show_progress=False,
    )
    return GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=1024,
    )


def build_scratch_model(cfg: LMTrainConfig, tokenizer: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    n_layer, n_embd, n_head = PRESETS[cfg.preset]
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.max_length,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def load_base(cfg: LMTrainConfig) -> tuple[Any, Any, list[int]]:
    """The ``--base`` model + tokenizer, with the prompt tokens added (embeddings resized),
    and the ids of the added tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(cfg.base).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.base, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(cfg.base, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"base model {cfg.base!r} cannot be loaded ({str(exc).splitlines()[0][:160]}); "
            "give a local folder or a name the network can reach"
        ) from exc
    before = len(tokenizer)
    if ensure_special_tokens(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, list(range(before, len(tokenizer)))


def _blocks(model: Any) -> torch.nn.ModuleList:
    """The stack of transformer blocks (``transformer.h`` for GPT-2, ``model.layers`` ...)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError("cannot find the transformer blocks of this model to freeze")


def apply_freezing(model: Any, cfg: LMTrainConfig) -> None:
    if cfg.freeze_embeddings:
        for p in model.get_input_embeddings().parameters():
            p.requires_grad_(False)
        for name, p in model.named_parameters():
            if name.endswith(("wpe.weight", "embed_positions.weight")):
                p.requires_grad_(False)
    if cfg.freeze_layers:
        blocks = _blocks(model)
        if cfg.freeze_layers > len(blocks):
            raise ConfigError(f"--freeze-layers {cfg.freeze_layers}: the model has only {len(blocks)} layers")
        for block in blocks[: cfg.freeze_layers]:
            for p in block.parameters():
                p.requires_grad_(False)


def apply_lora(model: Any, cfg: LMTrainConfig, new_token_ids: list[int]) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()] or None
    if targets is None and model.config.model_type == "gpt2":
        targets = ["c_attn", "c_proj"]
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        fan_in_fan_out=model.config.model_type == "gpt2",
        trainable_token_indices=new_token_ids or None,
    )
    return get_peft_model(model, lora)


def count_params(model: Any) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    return {
        "params": total,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def preset_params(preset: str, vocab_size: int = 8000, n_positions: int = 256) -> int:
    """Parameter count of a from-scratch preset (tied input/output embeddings)."""
    n_layer, d, _ = PRESETS[preset]
    block = 12 * d * d + 13 * d  # attention (4 d^2) + MLP (8 d^2) + biases + 2 LayerNorms
    return vocab_size * d + n_positions * d + n_layer * block + 2 * d


# ---------------------------------------------------------------- training


def train_lm(cfg: LMTrainConfig) -> dict[str, Any]:
    """Train, keep the best checkpoint by validation loss, save everything; return metrics."""
    from transformers import set_seed

    cfg.validate()
    set_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    t0 = time.perf_counter()
    out = Path(cfg.output_dir)
    ckpt = out / CHECKPOINT
    if cfg.resume and not (ckpt / "state.json").is_file():
        raise ConfigError(f"--resume: no checkpoint in {ckpt}; start without --resume")
    train, val = _split(cfg)
    log.info("lm training: %d train / %d validation examples", len(train), len(val))

    # ---- tokenizer + model
    new_ids: list[int] = []
    if cfg.base:
        model, tokenizer, new_ids = load_base(cfg)
    else:
        if cfg.resume:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(ckpt, local_files_only=True)
        else:
            texts = [t for d in train for t in (d.text, d.reply, d.system, d.intent)]
            texts += [t.text for d in train for t in d.history]
            tokenizer = train_tokenizer(texts, cfg.vocab_size)
        model = build_scratch_model(cfg, tokenizer)
    apply_freezing(model, cfg)
    if cfg.lora_r:
        model = apply_lora(model, cfg, new_ids)
    device = pick_device(cfg.device)
    model.to(device).train()
    sizes = count_params(model)
    log.info(
        "model: %s, %.2fM parameters (%.2fM trainable), vocab %d",
        cfg.base or f"GPT-2 {cfg.preset}",
        sizes["params"] / 1e6,
        sizes["trainable_params"] / 1e6,
        len(tokenizer),
    )
    window = min(
        cfg.max_length, getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    )
    train_enc = encode_dialogues(tokenizer, train, window)
    val_enc = encode_dialogues(tokenizer, val, window)
    lengths = [len(ids) for ids, _ in train_enc]
    pad_id = tokenizer.pad_token_id

    state: dict[str, Any] = {
        "step": 0,
        "out_of_time": False,
        "epoch": 0,
        "batch": 0,
        "best_val": math.inf,
        "best_step": 0,
        "stale": 0,
        "train_curve": [],
        "val_curve": [],
        "elapsed": 0.0,
        "tokens": 0,
        "stopped_early": False,
    }
    best_state: dict[str, torch.Tensor] | None = None

    # ---- optimizer + schedule (no decay on biases, LayerNorms, embeddings)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: every parameter is frozen")
    no_decay = ("bias", "ln_", "LayerNorm", "norm", "wte", "wpe")
    groups = [
        {
            "params": [p for n, p in params if not any(k in n for k in no_decay)],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for n, p in params if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, betas=(0.9, 0.95))
    batches_per_epoch = math.ceil(len(train_enc) / cfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total_steps = math.ceil(steps_per_epoch * cfg.epochs) if cfg.epochs > 0 else cfg.max_steps
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    warmup = int(cfg.warmup_ratio * total_steps)

    def elapsed() -> float:
        return state["elapsed"] + time.perf_counter() - t0

    def progress(step: int) -> float:
        """Share of the decay done: by steps, or by the time budget when that is further."""
        by_step = (step - warmup) / max(1, total_steps - warmup)
        return min(1.0, max(by_step, elapsed() / cfg.time_budget_s if cfg.time_budget_s else 0.0))

    scheduler = lr_schedule(optimizer, cfg.lr_scheduler, warmup, progress)
    amp_dtype = pick_dtype(device) if device.type == "cuda" and cfg.mixed_precision else None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    eval_every = cfg.eval_every or steps_per_epoch

    if cfg.resume:
        model.load_state_dict(torch.load(ckpt / "model.pt", map_location=device))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt"))
        best_state = torch.load(ckpt / "best.pt", map_location="cpu")
        state.update(json.loads((ckpt / "state.json").read_text()), out_of_time=False)
        log.info("resumed at step %d (epoch %d)", state["step"], state["epoch"] + 1)

    def evaluate_and_checkpoint() -> bool:
        """Validation loss, best-state tracking, checkpoint; True = stop early."""
        nonlocal best_state
        val_loss = reply_loss(model, val_enc, pad_id, device)
        state["val_curve"].append([state["step"], round(val_loss, 5)])
        log.info(
            "step %d: val loss %.4f (perplexity %.2f)", state["step"], val_loss, math.exp(min(val_loss, 50))
        )
        if val_loss < state["best_val"]:
            state.update(best_val=val_loss, best_step=state["step"], stale=0)
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            state["stale"] += 1
        save_checkpoint(ckpt, model, tokenizer, optimizer, scheduler, best_state, state, t0)
        return bool(cfg.patience and state["stale"] >= cfg.patience)

    # ---- loop
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    bar = tqdm(total=total_steps, initial=state["step"], desc="lm training", unit="step", dynamic_ncols=True)

    def finished() -> bool:
        if cfg.time_budget_s and elapsed() >= cfg.time_budget_s and not state["out_of_time"]:
            log.info("time budget of %.0fs used up at step %d", cfg.time_budget_s, state["step"])
            state["out_of_time"] = True
        return state["step"] >= total_steps or state["out_of_time"]

    running, running_n, stop = 0.0, 0, state["step"] >= total_steps  # at least one step, even out of time
    try:
        while not stop and state["epoch"] < n_epochs:
            batches = length_grouped_batches(
                lengths, cfg.batch_size, random.Random(cfg.seed + state["epoch"])
            )
            for b in range(state["batch"], len(batches), cfg.grad_accum):
                group = [
                    collate([train_enc[i] for i in idx], pad_id) for idx in batches[b : b + cfg.grad_accum]
                ]
                n_tokens = sum(int((g["labels"][:, 1:] != IGNORE_INDEX).sum()) for g in group)
                for micro in group:  # one optimizer step; loss = mean over the group's reply tokens
                    micro = {k: v.to(device) for k, v in micro.items()}
                    with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                        loss_sum, _ = summed_loss(model, micro)
                    loss = loss_sum / max(n_tokens, 1)
                    (scaler.scale(loss) if scaler else loss).backward()
                    running += loss_sum.item()
                    state["tokens"] += int(micro["attention_mask"].sum())
                running_n += n_tokens
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for _, p in params], cfg.max_grad_norm)
                scaler.step(optimizer) if scaler else optimizer.step()
                if scaler:
                    scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                state["batch"] = b + cfg.grad_accum
                bar.update(1)
                done = finished()
                if state["step"] % cfg.log_every == 0 or done:
                    mean = running / max(running_n, 1)
                    state["train_curve"].append([state["step"], round(mean, 5)])
                    bar.set_postfix(loss=f"{mean:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
                    running, running_n = 0.0, 0
                end_of_epoch = state["batch"] >= len(batches)
                if end_of_epoch:
                    state.update(epoch=state["epoch"] + 1, batch=0)
                if state["step"] % eval_every == 0 or done or end_of_epoch:
                    if evaluate_and_checkpoint():
                        log.info("early stopping: no better val loss for %d evaluations", state["stale"])
                        state["stopped_early"] = stop = True
                if stop or done:
                    stop = True
                    break
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint(ckpt, model, tokenizer, optimizer, scheduler, best_state, state, t0)
        raise ChatbotError(
            f"training interrupted at step {state['step']}; continue with --resume --output {out}"
        ) from None
    bar.close()
    if best_state is None:  # resumed after the last step: evaluate once
        evaluate_and_checkpoint()
    train_time = state["elapsed"] + time.perf_counter() - t0

    # ---- save the best weights as a plain causal-LM folder
    model.load_state_dict(best_state)
    if cfg.lora_r:
        model = model.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "lm_training.json").write_text(json.dumps(_jsonable(asdict(cfg)), indent=2), encoding="utf-8")
    if not cfg.keep_checkpoint:
        shutil.rmtree(ckpt, ignore_errors=True)
    metrics: dict[str, Any] = {
        "val_loss": round(state["best_val"], 5),
        "val_perplexity": round(math.exp(min(state["best_val"], 50)), 3),
        "best_step": state["best_step"],
        "steps": state["step"],
        "epochs": round(state["step"] / steps_per_epoch, 3),
        "stopped_early": state["stopped_early"],
        "stopped_by_time_budget": state["out_of_time"],
        "train_time_s": round(train_time, 1),
        "tokens_per_s": round(state["tokens"] / max(train_time, 1e-9), 1),
        "n_train": len(train),
        "n_validation": len(val),
        "vocab_size": len(tokenizer),
        "context_window": window,
        **sizes,
        "first_train_loss": state["train_curve"][0][1] if state["train_curve"] else None,
        "last_train_loss": state["train_curve"][-1][1] if state["train_curve"] else None,
        "train_loss_curve": state["train_curve"],
        "val_loss_curve": state["val_curve"],
    }
    plot_loss_curve(out / "loss-curve.png", state["train_curve"], state["val_curve"])
    if cfg.eval_samples:
        from core.evaluation.lm_report import evaluate_lm
        from core.generator import Generator

        report = evaluate_lm(
            Generator(model.eval(), tokenizer, device, out), val, out / "eval", limit=cfg.eval_samples
        )
        metrics.update(
            {
                f"sample_{k}": report[k]
                for k in ("rouge_l", "bleu", "distinct_1", "distinct_2", "mean_reply_words")
            }
        )
    metrics["build_time_s"] = round(state["elapsed"] + time.perf_counter() - t0, 1)
    write_metrics(out, metrics)
    _write_card(out, cfg, metrics)
    log.info(
        "saved %s: val loss %.4f, perplexity %.2f, %.0fs",
        out,
        metrics["val_loss"],
        metrics["val_perplexity"],
        train_time,
    )
    return metrics


def lr_schedule(optimizer: Any, kind: str, warmup: int, progress: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then linear/cosine decay to 0 (or constant) over ``progress(step)``
    in [0, 1] (steps done, or time used when a time budget runs out first)."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        p = progress(step)
        return {"linear": 1.0 - p, "cosine": 0.5 * (1.0 + math.cos(math.pi * p))}.get(kind, 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def save_checkpoint(
    ckpt: Path,
    model: Any,
    tokenizer: Any,
    optimizer: Any,
    scheduler: Any,
    best_state: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
    t0: float,
) -> None:
    """Everything ``--resume`` needs: weights, best weights, optimizer, schedule, counters."""
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ckpt / "model.pt")
    torch.save(best_state if best_state is not None else model.state_dict(), ckpt / "best.pt")
    torch.save(optimizer.state_dict(), ckpt / "optimizer.pt")
    torch.save(scheduler.state_dict(), ckpt / "scheduler.pt")
    tokenizer.save_pretrained(ckpt)
    saved = dict(state, elapsed=state["elapsed"] + time.perf_counter() - t0)
    (ckpt / "state.json").write_text(json.dumps(saved), encoding="utf-8")


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


def _write_card(out: Path, cfg: LMTrainConfig, metrics: dict[str, Any]) -> None:
    keys = (
        "val_loss",
        "val_perplexity",
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
    options = {k: v for k, v in _jsonable(asdict(cfg)).items() if k not in ("extra",)}
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
            "Prompt format": "`<|system|>style<|intent|>intent<|user|>…<|end|><|bot|>…<|end|>` (core/prompt.py)",
            "Metrics": {k: metrics[k] for k in keys if k in metrics},
            "Options": options | cfg.extra,
            "Files": "loss-curve.png (train/validation loss), eval/lm-samples.md (sample replies), metrics.json",
        },
    )
