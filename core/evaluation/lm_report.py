"""Evaluate the dialogue LM on held-out exchanges and write a report a person can read.

``evaluate_lm`` measures perplexity on the reference replies (reply tokens only, the
same masking as training; ``core/evaluation/loss.py``), then generates replies
(greedy, so figures repeat) for up to ``limit`` examples and scores them against the references: ROUGE-L F1
(rouge-score), corpus BLEU (sacrebleu), distinct-1/2 and mean length. It writes
``lm-report.json`` and ``lm-samples.md`` (prompt, generated reply, reference).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.evaluation.loss import perplexity, reply_loss
from core.persona import GenerationSettings
from core.prompt import Dialogue
from core.protocols import GenerationRequest
from core.training.data import Example
from core.training.dialogues import encode_dialogues

log = logging.getLogger(__name__)

EVAL_SETTINGS = GenerationSettings.model_validate(
    {"max_new_tokens": 200, "do_sample": False, "repetition_penalty": 1.1}
)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams over every text (lower-cased words); 0 when none."""
    grams = [
        tuple(words[i : i + n])
        for t in texts
        for words in [t.lower().split()]
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (stemmed), 0..1."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [
        scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references, strict=True)
    ]
    return sum(scores) / len(scores) if scores else 0.0


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU, 0..100 (sacrebleu defaults)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score) if hypotheses else 0.0


def as_dialogues(examples: Sequence[Dialogue | Example], system: str = "") -> list[Dialogue]:
    out = []
    for ex in examples:
        if isinstance(ex, Dialogue):
            out.append(ex)
        elif ex.response:
            out.append(Dialogue(text=ex.text, reply=ex.response, intent=ex.intent, system=system))
    return out


def evaluate_lm(
    generator: Any,
    examples: Sequence[Dialogue | Example],
    out_dir: Path | str,
    limit: int = 64,
    *,
    batch_size: int = 16,
    settings: GenerationSettings = EVAL_SETTINGS,
    system: str = "",
) -> dict[str, Any]:
    """Perplexity on all ``examples``, generation metrics on the first ``limit``;
    writes the report files into ``out_dir`` and returns the figures."""
    dialogues = as_dialogues(examples, system)
    if not dialogues:
        raise ConfigError("no examples with a reference reply to evaluate the LM on")
    if limit < 1 or batch_size < 1:
        raise ConfigError("--limit and --batch-size must be >= 1")
    started = time.perf_counter()
    encoded = encode_dialogues(generator.tokenizer, dialogues, generator.context_window)
    loss = reply_loss(generator.model, encoded, generator.tokenizer.pad_token_id, generator.device)

    chosen = dialogues[:limit]
    hyps = _generate(generator, chosen, settings, batch_size)
    refs = [d.reply for d in chosen]
    report: dict[str, Any] = {
        "n_examples": len(dialogues),
        "n_generated": len(chosen),
        "loss": round(loss, 5),
        "perplexity": round(perplexity(loss), 3),
        "rouge_l": round(rouge_l(hyps, refs), 4),
        "bleu": round(bleu(hyps, refs), 2),
        "distinct_1": round(distinct_n(hyps, 1), 4),
        "distinct_2": round(distinct_n(hyps, 2), 4),
        "reference_distinct_2": round(distinct_n(refs, 2), 4),
        "mean_reply_words": round(sum(len(h.split()) for h in hyps) / max(len(hyps), 1), 1),
        "mean_reference_words": round(sum(len(r.split()) for r in refs) / max(len(refs), 1), 1),
        "empty_replies": sum(1 for h in hyps if not h.strip()),
        "settings": settings.model_dump(),
        "eval_time_s": round(time.perf_counter() - started, 1),
        "samples": [
            {"text": d.text, "intent": d.intent, "system": d.system, "generated": h, "reference": d.reply}
            for d, h in zip(chosen, hyps, strict=False)
        ],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm-report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    _write_samples(out / "lm-samples.md", chosen, hyps, report)
    log.info(
        "lm eval: perplexity %.2f, ROUGE-L %.3f, BLEU %.1f (%d replies)",
        report["perplexity"],
        report["rouge_l"],
        report["bleu"],
        len(hyps),
    )
    return report


def _generate(
    generator: Any, dialogues: Sequence[Dialogue], settings: GenerationSettings, batch_size: int
) -> list[str]:
    requests = [
        GenerationRequest(text=d.text, intent=d.intent, style=d.system, history=d.history, settings=settings)
        for d in dialogues
    ]
    return [
        h
        for s in range(0, len(requests), batch_size)
        for h in generator.generate(requests[s : s + batch_size])
    ]


def _write_samples(
    path: Path, dialogues: Sequence[Dialogue], hyps: Sequence[str], report: dict[str, Any]
) -> None:
    lines = [
        "# Dialogue LM samples",
        "",
        f"perplexity {report['perplexity']} · ROUGE-L {report['rouge_l']} · BLEU {report['bleu']} · "
        f"distinct-2 {report['distinct_2']} · greedy decoding, "
        f"max {report['settings']['max_new_tokens']} new tokens",
        "",
    ]
    for k, (d, hyp) in enumerate(zip(dialogues, hyps, strict=False), 1):
        lines += [f"## {k}. `{d.intent or '-'}`: {d.text}", ""]
        if d.history:
            lines += ["History:", ""] + [f"> **{t.role}**: {t.text}" for t in d.history] + [""]
        lines += ["**Generated**", "", _quote(hyp or "(empty)"), "", "**Reference**", "", _quote(d.reply), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
