"""`chatbot train lm` and `chatbot eval lm MODEL DATA` (registered in bots/cli.py).

Plain functions with typer options, so ``train_app.command("lm")(train_lm)`` works.
User mistakes (ChatbotError) print one red line and exit with code 2 (``bots.console.friendly``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import typer

from bots.commands.options import config_command
from bots.config import model_folder
from bots.console import friendly, out
from bots.personas import DEFINITIONS, load_persona_file
from core.errors import ConfigError, ModelMissing
from core.evaluation.judge import ResponseJudge
from core.training.config import LMTrainConfig, default_lm_config

SAMPLE_FIGURES = ("rouge_l", "bleu", "distinct_1", "distinct_2", "mean_reply_words")
DEFAULT_PERSONA = DEFINITIONS / "support.yaml"  # style, facts and settings replies are judged with


def train_and_evaluate_lm(cfg: LMTrainConfig) -> dict[str, Any]:
    """Train, fit the reply judge on the training data's responses (saved next to the
    LM), then score ``eval_samples`` greedy replies on the validation split (written to
    OUTPUT/eval): ROUGE/BLEU and the reply-quality figures, added to metrics.json and
    the model card."""
    from core.evaluation.lm_report import evaluate_lm
    from core.generator import Generator
    from core.training.lm import save_report, split_dialogues, train_lm

    started = time.perf_counter()
    metrics = train_lm(cfg)
    train, validation = split_dialogues(cfg)
    judge = _fit_judge(train + validation, cfg.output_dir, cfg.seed)
    if judge is not None:
        metrics["judge_held_out_accuracy"] = round(judge.held_out_accuracy, 4)
    if cfg.eval_samples:
        generator = Generator.from_pretrained(cfg.output_dir, device=cfg.device)
        where = Path(cfg.output_dir) / "eval"
        report = evaluate_lm(generator, validation, where, limit=cfg.eval_samples)
        metrics["eval_perplexity"] = report["perplexity"]
        metrics |= {f"sample_{k}": report[k] for k in SAMPLE_FIGURES}
        if judge is not None:
            quality = _quality(generator, judge, validation, cfg.eval_samples, DEFAULT_PERSONA, where)
            metrics |= {f"reply_{k}": v for k, v in quality.items() if k != "judge_held_out_accuracy"}
    metrics["build_time_s"] = round(time.perf_counter() - started, 1)
    save_report(cfg, metrics)
    return metrics


def _fit_judge(dialogues: list[Any], folder: Path, seed: int) -> ResponseJudge | None:
    """The reply judge trained on the responses of ``dialogues`` and saved into
    ``folder``; None (with one line saying why) when they have too few intents."""
    from core.evaluation.judge import train_judge

    try:
        judge = train_judge(dialogues, held_out=0.1, seed=seed)
    except ConfigError as exc:
        out.print(f"[yellow]no reply judge[/yellow]: {exc}")
        return None
    judge.save(folder)
    return judge


def _quality(
    generator: Any,
    judge: ResponseJudge,
    held_out: list[Any],
    n: int,
    persona_file: Path,
    where: Path,
    *,
    sampled: bool = False,
) -> dict[str, float]:
    """The reply-quality report on ``n`` held-out questions spread over the intents,
    answered with the persona's style, facts and settings (greedy unless ``sampled``);
    writes reply-quality.json and reply-quality.md into ``where``."""
    from core.evaluation.reply_quality import reply_quality, spread_over_intents, summary, write_sheet

    persona = load_persona_file(persona_file)
    settings = persona.generation.model_copy(update={"do_sample": sampled})
    questions = spread_over_intents([d for d in held_out if d.intent], n)
    report = reply_quality(
        generator, judge, questions, held_out, settings, style=persona.style, facts=persona.facts
    )
    report["persona"] = str(persona_file)
    where.mkdir(parents=True, exist_ok=True)
    (where / "reply-quality.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    write_sheet(where / "reply-quality.md", report)
    return summary(report)


def _print_quality(figures: dict[str, float], where: Path) -> None:
    f = figures
    out.print(
        f"reply quality (judge {f['judge_held_out_accuracy']:.1%} on held-out responses): on intent "
        f"{f['on_intent']:.1%} single-turn / {f['on_intent_multi_turn']:.1%} with 1-3 earlier turns "
        f"({f['earlier_turns_in_prompt']} in the prompt); invented number {f['invented_number']:.1%} / "
        f"{f['invented_number_multi_turn']:.1%}, after the fact guard "
        f"{f['invented_number_after_guard']:.1%}; "
        f"unfilled-slot phrasing {f['unfilled_slot']:.1%} / {f['unfilled_slot_multi_turn']:.1%}"
    )
    out.print(f"replies: {where / 'reply-quality.md'}")


@friendly
@config_command(
    LMTrainConfig,
    default_lm_config,
    "start from the `chatbot models build` recipe (Bitext from scratch, 650 steps, ~11 min "
    "on 2 idle CPU cores); "
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
    if "reply_on_intent" in metrics:
        figures = {k.removeprefix("reply_"): v for k, v in metrics.items() if k.startswith("reply_")}
        _print_quality(
            {**figures, "judge_held_out_accuracy": metrics["judge_held_out_accuracy"]},
            Path(cfg.output_dir) / "eval",
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
    persona: Path = typer.Option(
        DEFAULT_PERSONA,
        "--persona",
        help="persona file whose style, facts and settings the judged replies use",
    ),
    sampled: bool = typer.Option(
        False, "--sampled", help="judged replies sampled as the persona says (seeded), not greedy"
    ),
    quality: bool = typer.Option(True, "--quality/--no-quality", help="the reply-quality report (judge)"),
) -> None:
    """Perplexity, ROUGE-L, BLEU, distinct-n, reply length and a sample sheet; then the
    reply-quality report: on-intent share by the reply judge (MODEL/judge.joblib, trained
    on DATA's responses when missing), invented numbers and unfilled-slot phrasing,
    single-turn and with 1-3 unrelated earlier turns."""
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
    if quality:
        judge: ResponseJudge | None
        try:
            judge = ResponseJudge.load(folder)
        except ModelMissing:
            judge = _fit_judge(load_dialogues(data, seed), folder, seed)
        if judge is not None:
            _print_quality(
                _quality(generator, judge, dialogues, limit, persona, where, sampled=sampled), where
            )
