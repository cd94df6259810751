"""The options every training run shares, as one frozen dataclass.

Each field's ``metadata["help"]`` is its command-line help: ``bots/commands/options.py``
turns the fields of a config into typer options, defaults included, the way
``HfArgumentParser`` reads ``run_clm.py``'s dataclasses. :class:`LMTrainConfig` and
:class:`IntentTrainConfig` extend it (``core/training/lm.py``, ``core/training/intent.py``)
and override the defaults that differ. A config validates itself when it is made, so an
invalid one cannot exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from core.errors import ConfigError
from core.training.data import BITEXT_CSV

SCHEDULERS = ("linear", "cosine", "constant")
OOS_METHODS = ("class", "threshold", "both")
POOLINGS = ("cls", "mean")
# (n_layer, n_embd, n_head): tiny for tests, small for the 2-core default, base = GPT-2 124M.
PRESETS: dict[str, tuple[int, int, int]] = {"tiny": (2, 64, 2), "small": (4, 256, 4), "base": (12, 768, 12)}


# A Path default is immutable; ruff's RUF009 only knows that of str, int, float and bool,
# hence the noqa on the Path fields below.
def option(default: Any, help: str) -> Any:
    """A dataclass field with its command-line help (only immutable defaults)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    kind: ClassVar[str] = "model"

    train_file: Path = option(BITEXT_CSV, "training data: CSV or JSONL")  # noqa: RUF009
    output_dir: Path = option(Path("models/model"), "model folder to write (models/NAME)")  # noqa: RUF009
    base: str = option("", "base model to fine-tune: HF name or local folder")
    validation_file: Path | None = option(None, "separate validation data (else a split)")  # noqa: RUF009
    validation_split: float = option(0.1, "share held out for validation, stratified by intent")
    max_length: int = option(48, "tokens per example (longer ones are truncated)")
    epochs: float = option(3.0, "passes over the training data (may be fractional)")
    max_steps: int = option(0, "stop after N optimizer steps, or the epochs, whichever is first (0 = off)")
    batch_size: int = option(32, "examples per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step (gradient accumulation)")
    learning_rate: float = option(1e-4, "peak learning rate (AdamW)")
    warmup_ratio: float = option(0.1, "share of the steps with a linear learning-rate warmup")
    lr_scheduler: str = option("linear", "decay after warmup: linear | cosine | constant")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases, norms, embeddings)")
    time_budget_s: float = option(
        0.0, "seconds: stop by then, decaying the LR by step or time, whichever is further (0 = off)"
    )
    eval_every: int = option(0, "validate (and checkpoint) every N steps (0 = at each epoch end)")
    patience: int = option(2, "early stopping: evaluations without a better validation score (0 = off)")
    freeze_layers: int = option(0, "freeze the lowest N transformer layers")
    mixed_precision: bool = option(True, "bf16 (fp16 where bf16 is missing) on CUDA; CPU stays fp32")
    resume: bool = option(False, "continue from the last checkpoint in OUTPUT/checkpoints")
    keep_checkpoint: bool = option(False, "keep OUTPUT/checkpoints after a finished run")
    seed: int = option(13, "data split, shuffling and initialisation")
    limit: int = option(0, "use at most N training examples, stratified (0 = all)")
    threads: int = option(0, "CPU threads for torch (0 = all cores)")
    device: str | None = option(None, "cpu or cuda (default: cuda when present)")
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0 = off)")
    log_every: int = option(25, "log the training loss every N steps")

    def __post_init__(self) -> None:
        for ok, message in self.checks():
            if not ok:
                raise ConfigError(f"{self.kind} training: {message}")

    def validate(self) -> None:
        """Raise ConfigError for the first bad value (also done when the config is made)."""
        self.__post_init__()

    def checks(self) -> list[tuple[bool, str]]:
        counts = ("max_steps", "patience", "freeze_layers", "limit", "eval_every", "threads")
        return [
            (self.epochs > 0 or self.max_steps > 0, "epochs or max_steps must be > 0"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.time_budget_s >= 0, "time_budget_s must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}"),
            (
                self.validation_file is not None or 0 < self.validation_split < 1,
                "validation_split must be between 0 and 1",
            ),
            (min(getattr(self, c) for c in counts) >= 0, f"counts ({', '.join(counts)}) must be >= 0"),
        ]

    @property
    def checkpoints(self) -> Path:
        """Where the Trainer writes ``checkpoint-STEP`` folders."""
        return Path(self.output_dir) / "checkpoints"


@dataclass(frozen=True)
class LMTrainConfig(TrainConfig):
    kind: ClassVar[str] = "lm"

    train_file: Path = option(BITEXT_CSV, "CSV (instruction,intent,response) or JSONL chats")  # noqa: RUF009
    output_dir: Path = option(Path("models/lm-default"), "model folder to write")  # noqa: RUF009
    base: str = option("", "fine-tune this causal LM (HF name or local folder), not from scratch")
    validation_split: float = option(0.05, "share held out for validation, stratified by intent")
    max_length: int = option(384, "tokens per example, prompt + reply (from scratch: the context window)")
    batch_size: int = option(16, "examples per micro-batch")
    learning_rate: float = option(1e-3, "peak learning rate (AdamW, betas 0.9/0.95)")
    warmup_ratio: float = option(0.05, "share of the steps with a linear learning-rate warmup")
    lr_scheduler: str = option("cosine", "decay after warmup: linear | cosine | constant")
    preset: str = option("small", "from-scratch size: tiny | small | base (GPT-2 124M shape)")
    vocab_size: int = option(8000, "BPE vocabulary size when training from scratch")
    dropout: float = option(0.1, "dropout of a from-scratch model")
    freeze_embeddings: bool = option(False, "keep the token/position embeddings fixed")
    lora_r: int = option(0, "train LoRA adapters of this rank (peft) instead of all weights; 0 = off")
    lora_alpha: int = option(16, "LoRA scaling")
    lora_dropout: float = option(0.05, "LoRA dropout")
    lora_targets: str = option("", "comma-separated module names for LoRA (default: attention projections)")
    eval_samples: int = option(
        24, "validation replies generated for ROUGE/BLEU and the reply-quality judge after training (0 = off)"
    )
    multi_turn: float = option(
        0.5, "share of training examples given 1-3 earlier exchanges as history (0 = single-turn)"
    )

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.max_length >= 16, "max_length must be >= 16"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (bool(self.base) or self.preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}"),
            (self.vocab_size >= 300, "vocab_size must be >= 300 (256 bytes + merges + special tokens)"),
            (min(self.lora_r, self.eval_samples) >= 0, "lora_r and eval_samples must be >= 0"),
            (0 <= self.multi_turn <= 1, "multi_turn must be between 0 and 1"),
        ]


# The CPU recipe's length in optimizer steps (not seconds), so every machine builds the
# same model; 653 s of training on an idle 2-core CPU (docs/lm-model.md).
CPU_LM_STEPS = 650
GPU_LM_STEPS = 1500


def default_lm_config(output_dir: Path | str, device: Any = None) -> LMTrainConfig:
    """The `chatbot models build` recipe for the hardware at hand (``device``: a
    ``torch.device``, default the one training would use): Bitext from scratch with
    multi-turn examples; on a CPU the ``small`` preset for :data:`CPU_LM_STEPS` steps,
    on a GPU the ``base`` preset (GPT-2 small's shape) for up to :data:`GPU_LM_STEPS`."""
    if device is None:
        from core.device import pick_device

        device = pick_device(None)
    if getattr(device, "type", str(device)) == "cuda":
        return LMTrainConfig(
            output_dir=Path(output_dir),
            preset="base",
            max_length=512,
            batch_size=32,
            epochs=100.0,
            max_steps=GPU_LM_STEPS,
            learning_rate=5e-4,
            warmup_ratio=0.05,
            dropout=0.1,
            eval_every=150,
            patience=3,
            eval_samples=64,
        )
    return LMTrainConfig(
        output_dir=Path(output_dir),
        epochs=100.0,
        max_steps=CPU_LM_STEPS,
        learning_rate=2e-3,
        warmup_ratio=0.03,
        dropout=0.0,
        patience=0,
    )


@dataclass(frozen=True)
class IntentTrainConfig(TrainConfig):
    kind: ClassVar[str] = "intent"

    train_file: Path = option(BITEXT_CSV, "CSV (text,label or Bitext) or JSONL")  # noqa: RUF009
    output_dir: Path = option(Path("models/intent-default"), "model folder to write")  # noqa: RUF009
    base: str = option("", "base encoder: HF name or local folder (default: the bundled MiniLM-L6)")
    freeze_layers: int = option(0, "freeze the embeddings and the lowest N encoder layers")
    pooling: str = option(
        "cls", "sentence vector for the head: cls (the [CLS] pooler) | mean (mean of tokens)"
    )
    frozen_encoder: bool = option(
        False,
        "keep the encoder frozen and fit a logistic-regression head on its sentence vectors (--pooling mean)",
    )
    head_c: float = option(10.0, "inverse L2 strength of that logistic-regression head")
    class_weights: bool = option(False, "balanced loss weights for imbalanced intents")
    oos_examples: str | None = option(None, "out-of-scope text: FILE or 'auto'")
    oos_method: str = option("class", "how OOS text is used: class | threshold | both")
    small_talk: bool = option(False, "add generated greeting / thanks / goodbye intents")
    augment: float = option(
        0.0, "paraphrase-style rewrites per training example: typos, synonyms, wrappers (0 = off)"
    )
    casual: int = option(0, "casual requests per intent from hand-written templates (0 = off)")
    oos_max_loss: float = option(
        0.01, "in-scope validation accuracy the OOS threshold may cost (0.01 = 1 point)"
    )
    calibrate: bool = option(True, "fit a softmax temperature on validation data (temperature scaling)")

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.max_length >= 4, "max_length must be >= 4"),
            (self.oos_method in OOS_METHODS, f"oos_method must be one of {', '.join(OOS_METHODS)}"),
            (self.pooling in POOLINGS, f"pooling must be one of {', '.join(POOLINGS)}"),
            (not self.frozen_encoder or self.pooling == "mean", "--frozen-encoder needs --pooling mean"),
            (self.head_c > 0, "head_c must be > 0"),
            (self.augment >= 0 and self.casual >= 0, "augment and casual must be >= 0"),
            (0 <= self.oos_max_loss <= 1, "oos_max_loss must be between 0 and 1"),
        ]


def default_intent_config(output_dir: Path | str) -> IntentTrainConfig:
    """The `chatbot models build` recipe: Bitext + small talk + generated rewrites, casual
    requests and out-of-scope text; a logistic-regression head on the frozen MiniLM's
    sentence vectors (about a minute on a 2-core CPU; docs/intent-model.md compares it
    with fine-tuning)."""
    return IntentTrainConfig(
        output_dir=Path(output_dir),
        epochs=3.0,
        learning_rate=2e-4,
        patience=0,
        oos_examples="auto",
        oos_method="both",
        small_talk=True,
        augment=1.0,
        casual=120,
        pooling="mean",
        frozen_encoder=True,
        head_c=10.0,
    )
