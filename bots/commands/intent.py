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

from bots.commands.options import config_command
from bots.config import model_folder
from bots.console import friendly, out
from core.errors import ConfigError
from core.training.config import IntentTrainConfig, default_intent_config


@friendly
@config_command(
    IntentTrainConfig,
    default_intent_config,
    "start from the `chatbot models build` recipe (Bitext, frozen MiniLM + logistic-regression head, "
    "~1 min on 2 idle CPU cores); options given on the command line override it",
)
def train_intent(cfg: IntentTrainConfig) -> None:
    """Fine-tune the intent classifier and save it with its metrics and model card.

    Every option is a field of IntentTrainConfig (core/training/config.py), default and
    help included.
    """
    from core.training.intent import train_intent as run_training

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    metrics = run_training(cfg)
    out.print(
        f"[green]saved[/green] {cfg.output_dir}  val accuracy {metrics['val_accuracy']:.4f}  "
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
    try:
        curve = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("oos_curve")
    except (OSError, ValueError):
        curve = None  # an older model, or none recorded: the plot shows this data alone
    report = evaluate_intent(
        classifier, load_examples(data), where, batch_size=batch_size, validation_curve=curve
    )
    nan = float("nan")
    out.print(f"accuracy {report.get('accuracy', nan):.4f}  macro-F1 {report.get('macro_f1', nan):.4f}")
    if "oos_recall" in report:
        out.print(f"OOS recall {report['oos_recall']:.4f}  OOS precision {report['oos_precision']:.4f}")
    out.print(f"report: {where / 'intent-report.md'}")
    out.print_json(json.dumps(report.get("most_confused", [])[:5]))
