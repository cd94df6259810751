"""`chatbot train intent` and `chatbot eval intent MODEL DATA` (registered in bots/cli.py).

Both are plain functions with typer options so the lead can do
``train_app.command("intent")(train_intent)``. User mistakes (ChatbotError) print one
red line and exit with code 2 (``bots.console.friendly``); no traceback.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from bots.config import model_folder
from bots.console import friendly, out
from core.errors import ConfigError


@friendly
def train_intent(
    data: Path = typer.Option(
        None,
        "--data",
        help="training CSV (text,label or Bitext columns) or JSONL; default data/bitext/train.csv",
    ),
    output: Path = typer.Option(
        Path("models/intent-default"), "--output", "-o", help="model folder to write (models/NAME)"
    ),
    base: str = typer.Option(
        "", "--base", help="base encoder: HF name or local folder; default the bundled MiniLM-L6"
    ),
    validation_file: Path = typer.Option(
        None, "--validation-file", help="separate validation data (else a split of --data)"
    ),
    validation_split: float = typer.Option(
        0.1, "--validation-split", help="fraction held out for validation"
    ),
    max_length: int = typer.Option(48, "--max-length", help="tokens per message (longer is truncated)"),
    epochs: float = typer.Option(3.0, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    grad_accum: int = typer.Option(1, "--grad-accum", help="gradient accumulation steps"),
    learning_rate: float = typer.Option(1e-4, "--lr", "--learning-rate"),
    warmup_ratio: float = typer.Option(0.1, "--warmup-ratio", help="share of steps with linear LR warmup"),
    lr_scheduler: str = typer.Option("linear", "--lr-scheduler", help="linear | cosine decay after warmup"),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    patience: int = typer.Option(
        2, "--patience", help="early stopping: epochs without better val macro-F1 (0 = off)"
    ),
    seed: int = typer.Option(13, "--seed"),
    freeze_layers: int = typer.Option(
        0, "--freeze-layers", help="freeze embeddings + the lowest N encoder layers"
    ),
    class_weights: bool = typer.Option(
        False, "--class-weights/--no-class-weights", help="balanced loss weights for imbalanced intents"
    ),
    mixed_precision: bool = typer.Option(
        True, "--mixed-precision/--no-mixed-precision", help="bf16/fp16 autocast (CUDA only)"
    ),
    max_steps: int = typer.Option(0, "--max-steps", help="stop after N optimizer steps (0 = epochs decide)"),
    limit: int = typer.Option(0, "--limit", help="use at most N training examples (0 = all)"),
    oos_examples: str = typer.Option(None, "--oos-examples", help="out-of-scope text: FILE or 'auto'"),
    oos_method: str = typer.Option("class", "--oos-method", help="class | threshold | both"),
    small_talk: bool = typer.Option(
        False, "--small-talk/--no-small-talk", help="add generated greeting/thanks/goodbye intents"
    ),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)"),
    default: bool = typer.Option(
        False,
        "--default",
        help="the `models build` recipe (Bitext, ~4 min on CPU); other options ignored except --output",
    ),
) -> None:
    """Fine-tune the intent classifier and save it with its metrics and model card."""
    from core.training.intent import IntentTrainConfig, default_intent_config
    from core.training.intent import train_intent as run_training

    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if default:
        cfg = default_intent_config(output)
    else:
        cfg = IntentTrainConfig(
            output_dir=output,
            base=base,
            validation_file=validation_file,
            validation_split=validation_split,
            max_length=max_length,
            epochs=epochs,
            batch_size=batch_size,
            grad_accum=grad_accum,
            learning_rate=learning_rate,
            warmup_ratio=warmup_ratio,
            lr_scheduler=lr_scheduler,
            weight_decay=weight_decay,
            patience=patience,
            seed=seed,
            freeze_layers=freeze_layers,
            class_weights=class_weights,
            mixed_precision=mixed_precision,
            max_steps=max_steps,
            limit=limit,
            oos_examples=oos_examples,
            oos_method=oos_method,
            small_talk=small_talk,
            device=device,
        )
        if data is not None:
            cfg.train_file = data
    metrics = run_training(cfg)
    out.print(
        f"[green]saved[/green] {output}  val accuracy {metrics['val_accuracy']:.4f}  "
        f"macro-F1 {metrics['val_macro_f1']:.4f}  ({metrics['train_time_s']}s)"
    )
    if metrics.get("val_oos_recall") is not None:
        out.print(
            f"out of scope: {metrics['oos_method']}, threshold {metrics['oos_threshold']:.2f}, "
            f"val OOS recall {metrics['val_oos_recall']:.3f}"
        )


@friendly
def eval_intent(
    model: str = typer.Argument(..., help="model folder, or a name under models/"),
    data: Path = typer.Argument(..., help="labelled CSV/JSONL; label out_of_scope marks OOS examples"),
    report_dir: Path = typer.Option(None, "--out", help="report folder (default MODEL/eval)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = typer.Option(None, "--device"),
    no_oos: bool = typer.Option(
        False, "--no-oos", help="turn the OOS threshold off (classifier accuracy only)"
    ),
) -> None:
    """Accuracy, macro-F1, per-intent scores, confusions, calibration; report files."""
    from core.evaluation.intent_report import evaluate_intent
    from core.intents import IntentClassifier
    from core.training.data import load_examples

    folder = model_folder(model)
    classifier = IntentClassifier.from_pretrained(folder, device=device)
    if no_oos:
        classifier.threshold = 0.0
    if batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    where = report_dir or folder / "eval"
    report = evaluate_intent(classifier, load_examples(data), where, batch_size=batch_size)
    out.print(
        f"accuracy {report.get('accuracy', float('nan')):.4f}  macro-F1 {report.get('macro_f1', float('nan')):.4f}"
    )
    if "oos_recall" in report:
        out.print(f"OOS recall {report['oos_recall']:.4f}  OOS precision {report['oos_precision']:.4f}")
    out.print(f"report: {where / 'intent-report.md'}")
    out.print_json(json.dumps(report.get("most_confused", [])[:5]))
