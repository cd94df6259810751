"""`chatbot train lm` and `chatbot eval lm MODEL DATA` (registered in bots/cli.py).

Plain functions with typer options, so ``train_app.command("lm")(train_lm)`` works.
User mistakes (ChatbotError) print one red line and exit with code 2 (``bots.console.friendly``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import typer

from bots.commands.options import config_command
from bots.config import model_folder
from bots.console import friendly, out
from core.errors import ConfigError
from core.training.config import LMTrainConfig, default_lm_config

SAMPLE_FIGURES = ("rouge_l", "bleu", "distinct_1", "distinct_2", "mean_reply_words")


def train_and_evaluate_lm(cfg: LMTrainConfig) -> dict[str, Any]:
    """Train, then score ``eval_samples`` greedy replies on the validation split (written
    to OUTPUT/eval) and add the figures to metrics.json and the model card."""
    from core.evaluation.lm_report import evaluate_lm
    from core.generator import Generator
    from core.training.lm import save_report, split_dialogues, train_lm

    started = time.perf_counter()
    metrics = train_lm(cfg)
    if cfg.eval_samples:
        generator = Generator.from_pretrained(cfg.output_dir, device=cfg.device)
        validation = split_dialogues(cfg)[1]
        report = evaluate_lm(generator, validation, Path(cfg.output_dir) / "eval", limit=cfg.eval_samples)
        metrics["eval_perplexity"] = report["perplexity"]
        metrics |= {f"sample_{k}": report[k] for k in SAMPLE_FIGURES}
    metrics["build_time_s"] = round(time.perf_counter() - started, 1)
    save_report(cfg, metrics)
    return metrics


@friendly
@config_command(
    LMTrainConfig,
    default_lm_config,
    "start from the `chatbot models build` recipe (Bitext from scratch, ~7 min on 2 CPU cores); "
    "options given on the command line override it",
)
def train_lm(cfg: LMTrainConfig) -> None:
    """Train the dialogue LM, then evaluate it on its validation split; save it with
    metrics, loss curve, model card and a sample sheet.

    Every option is a field of LMTrainConfig (core/training/config.py), default and help
    included.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    metrics = train_and_evaluate_lm(cfg)
    out.print(
        f"[green]saved[/green] {cfg.output_dir}  val loss {metrics['val_loss']:.4f}  perplexity "
        f"{metrics['val_perplexity']:.2f}  ({metrics['steps']} steps, {metrics['train_time_s']}s)"
    )
    if "sample_rouge_l" in metrics:
        out.print(
            f"samples: ROUGE-L {metrics['sample_rouge_l']:.3f}  BLEU {metrics['sample_bleu']:.1f}  "
            f"(see {Path(cfg.output_dir) / 'eval' / 'lm-samples.md'})"
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
        dialogues = stratified_split(dialogues, held_out, seed=seed)[1]
    where = report_dir or folder / "eval"
    settings = EVAL_SETTINGS.model_copy(update={"max_new_tokens": max_new_tokens})
    report = evaluate_lm(generator, dialogues, where, limit=limit, batch_size=batch_size, settings=settings)
    out.print(
        f"perplexity {report['perplexity']:.2f}  ROUGE-L {report['rouge_l']:.3f}  BLEU {report['bleu']:.1f}  "
        f"distinct-1/2 {report['distinct_1']:.3f}/{report['distinct_2']:.3f}  "
        f"mean reply {report['mean_reply_words']} words ({report['n_generated']} generated)"
    )
    out.print(f"report: {where / 'lm-report.json'}, samples: {where / 'lm-samples.md'}")
