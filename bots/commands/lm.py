"""`chatbot train lm` and `chatbot eval lm MODEL DATA` (registered in bots/cli.py).

Plain functions with typer options, so ``train_app.command("lm")(train_lm)`` works.
User mistakes (ChatbotError) print one red line and exit with code 2 (``bots.console.friendly``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from bots.config import model_folder
from bots.console import friendly, out
from core.errors import ConfigError


@friendly
def train_lm(
    data: Path = typer.Option(
        None,
        "--data",
        help="Bitext-style CSV (instruction,intent,response) or JSONL conversations; default data/bitext/train.csv",
    ),
    output: Path = typer.Option(
        Path("models/lm-default"), "--output", "-o", help="model folder to write (models/NAME)"
    ),
    base: str = typer.Option(
        "",
        "--base",
        help="fine-tune this causal LM (HF name or local folder) instead of training from scratch",
    ),
    preset: str = typer.Option(
        "small", "--preset", help="from-scratch size: tiny | small | base (GPT-2 124M shape)"
    ),
    validation_file: Path = typer.Option(
        None, "--validation-file", help="separate validation data (else a stratified split of --data)"
    ),
    validation_split: float = typer.Option(
        0.05, "--validation-split", help="fraction held out for validation, stratified by intent"
    ),
    max_length: int = typer.Option(
        256, "--max-length", help="tokens per example, prompt + reply (from scratch: the context window)"
    ),
    vocab_size: int = typer.Option(
        8000, "--vocab-size", help="BPE vocabulary size when training from scratch"
    ),
    epochs: float = typer.Option(3.0, "--epochs"),
    max_steps: int = typer.Option(0, "--max-steps", help="stop after N optimizer steps (0 = epochs decide)"),
    batch_size: int = typer.Option(16, "--batch-size"),
    grad_accum: int = typer.Option(1, "--grad-accum", help="gradient accumulation steps"),
    learning_rate: float = typer.Option(1e-3, "--lr", "--learning-rate"),
    warmup_ratio: float = typer.Option(0.05, "--warmup-ratio", help="share of steps with linear LR warmup"),
    lr_scheduler: str = typer.Option(
        "cosine", "--lr-scheduler", help="linear | cosine | constant after warmup"
    ),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    dropout: float = typer.Option(0.1, "--dropout", help="dropout of a from-scratch model"),
    time_budget: float = typer.Option(
        0.0,
        "--time-budget",
        help="seconds: stop by then, decaying the LR by step or time, whichever is further (0 = off)",
    ),
    eval_every: int = typer.Option(0, "--eval-every", help="validate every N steps (0 = each epoch)"),
    patience: int = typer.Option(
        2, "--patience", help="early stopping: evaluations without a better val loss (0 = off)"
    ),
    freeze_embeddings: bool = typer.Option(
        False, "--freeze-embeddings/--no-freeze-embeddings", help="keep token/position embeddings fixed"
    ),
    freeze_layers: int = typer.Option(0, "--freeze-layers", help="freeze the lowest N transformer blocks"),
    lora_r: int = typer.Option(
        0, "--lora-r", help="train LoRA adapters of this rank (peft) instead of all weights; 0 = off"
    ),
    lora_alpha: int = typer.Option(16, "--lora-alpha"),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout"),
    lora_targets: str = typer.Option(
        "", "--lora-targets", help="comma-separated module names (default: attention projections)"
    ),
    mixed_precision: bool = typer.Option(
        True, "--mixed-precision/--no-mixed-precision", help="bf16/fp16 autocast (CUDA only)"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from OUTPUT/checkpoint"),
    keep_checkpoint: bool = typer.Option(
        False, "--keep-checkpoint", help="keep OUTPUT/checkpoint after finishing"
    ),
    seed: int = typer.Option(13, "--seed"),
    limit: int = typer.Option(0, "--limit", help="use at most N training examples (0 = all)"),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0 = all cores)"),
    eval_samples: int = typer.Option(
        24, "--eval-samples", help="validation replies generated for ROUGE/BLEU after training (0 = off)"
    ),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)"),
    default: bool = typer.Option(
        False,
        "--default",
        help="the `models build` recipe (Bitext from scratch, ~8 min on 2 CPU cores); other options ignored except --output",
    ),
) -> None:
    """Train the dialogue LM and save it with metrics, loss curve and model card."""
    from core.training.lm import LMTrainConfig, default_lm_config
    from core.training.lm import train_lm as run_training

    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if default:
        cfg = default_lm_config(output)
    else:
        cfg = LMTrainConfig(
            output_dir=output,
            base=base,
            preset=preset,
            validation_file=validation_file,
            validation_split=validation_split,
            max_length=max_length,
            vocab_size=vocab_size,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            learning_rate=learning_rate,
            warmup_ratio=warmup_ratio,
            lr_scheduler=lr_scheduler,
            weight_decay=weight_decay,
            dropout=dropout,
            time_budget_s=time_budget,
            eval_every=eval_every,
            patience=patience,
            freeze_embeddings=freeze_embeddings,
            freeze_layers=freeze_layers,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            lora_targets=lora_targets,
            mixed_precision=mixed_precision,
            resume=resume,
            keep_checkpoint=keep_checkpoint,
            seed=seed,
            limit=limit,
            threads=threads,
            eval_samples=eval_samples,
            device=device,
        )
        if data is not None:
            cfg.train_file = data
    metrics = run_training(cfg)
    out.print(
        f"[green]saved[/green] {output}  val loss {metrics['val_loss']:.4f}  perplexity "
        f"{metrics['val_perplexity']:.2f}  ({metrics['steps']} steps, {metrics['train_time_s']}s)"
    )
    if "sample_rouge_l" in metrics:
        out.print(
            f"samples: ROUGE-L {metrics['sample_rouge_l']:.3f}  BLEU {metrics['sample_bleu']:.1f}  "
            f"(see {output / 'eval' / 'lm-samples.md'})"
        )


@friendly
def eval_lm(
    model: str = typer.Argument(..., help="model folder, or a name under models/"),
    data: Path = typer.Argument(
        ..., help="CSV (instruction,intent,response) or JSONL conversations with reference replies"
    ),
    report_dir: Path = typer.Option(None, "--out", help="report folder (default MODEL/eval)"),
    held_out: float = typer.Option(
        0.05,
        "--held-out",
        help="evaluate the stratified held-out split of DATA that training used (same seed); 0 = every row",
    ),
    seed: int = typer.Option(13, "--seed", help="split seed (training's --seed)"),
    limit: int = typer.Option(
        64, "--limit", help="replies to generate for ROUGE/BLEU/distinct-n (perplexity uses every example)"
    ),
    batch_size: int = typer.Option(16, "--batch-size"),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)"),
) -> None:
    """Perplexity, ROUGE-L, BLEU, distinct-n, reply length and a sample sheet."""
    from core.evaluation.lm_report import EVAL_SETTINGS, evaluate_lm
    from core.generator import Generator
    from core.training.data import stratified_split
    from core.training.dialogues import load_dialogues

    folder = model_folder(model)
    if not 0 <= held_out < 1:
        raise ConfigError("--held-out must be in [0, 1)")
    if max_new_tokens < 1:
        raise ConfigError("--max-new-tokens must be >= 1")
    generator = Generator.from_pretrained(folder, device=device)
    dialogues = load_dialogues(data, seed)
    if held_out:
        dialogues = stratified_split(dialogues, held_out, seed=seed)[1]  # type: ignore[arg-type]
    where = report_dir or folder / "eval"
    settings = EVAL_SETTINGS.model_copy(update={"max_new_tokens": max_new_tokens})
    report = evaluate_lm(generator, dialogues, where, limit=limit, batch_size=batch_size, settings=settings)
    out.print(
        f"perplexity {report['perplexity']:.2f}  ROUGE-L {report['rouge_l']:.3f}  BLEU {report['bleu']:.1f}  "
        f"distinct-1/2 {report['distinct_1']:.3f}/{report['distinct_2']:.3f}  "
        f"mean reply {report['mean_reply_words']} words ({report['n_generated']} generated)"
    )
    out.print(f"report: {where / 'lm-report.json'}, samples: {where / 'lm-samples.md'}")
