"""Reply quality of the default models, as a support team would judge it.

    python -m benchmarks.reply_quality [--models models] [--lm lm-default]
        [--intent intent-default] [--n 80] [--json FILE] [--samples SHEET.md]
        [--skip-lm] [--skip-intent] [--retrain-judge] [--sampled] [--best-of N [--latency]]
        [--repetition-penalty P] [--history-scope topic|all] [--carrying] [--sheet SHEET.md]

Prints, for docs/reply-quality.md:

1. the reply judge (TF-IDF + logistic regression on the Bitext *responses*, see
   core/evaluation/judge.py): its accuracy on its own held-out 10% of responses. It is
   saved as ``MODELS/lm-default/judge.joblib`` and reused on later runs;
2. the default LM (``MODELS/lm-default``) on ``--n`` questions of its held-out split
   (the stratified 5%, seed 13, that `chatbot models build` keeps out of training),
   spread over the intents, answered with the default persona's style and generation
   settings (greedy, so figures repeat), once single-turn and once with 1-3 unrelated
   earlier exchanges of that split as history: share of replies on the customer's intent (by the
   judge), share with a number of 4+ digits nobody wrote (not in the customer's turns,
   not in the persona's facts; replies filled from the facts as the engine fills
   them; and after the fact guard), share with unfilled-slot phrasing, and how many
   earlier turns reached the prompt (core/evaluation/reply_quality.py); ``--sampled
   --best-of N`` samples N candidates per reply and sends the one the judge rates most
   on the intent (core/best_of.py), ``--latency`` times one message alone both ways;
3. the default intent classifier (``MODELS/intent-default``) on the hand-written
   paraphrase set data/paraphrase/test.csv: in-scope accuracy (an in-scope message
   answered out-of-scope is wrong), the same before the OOS rule (top label), and
   out-of-scope recall.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bots.personas import DEFINITIONS, load_persona_file
from core.errors import ModelMissing
from core.evaluation.judge import ResponseJudge, score_replies, train_judge
from core.evaluation.reply_quality import (
    reference_carrying,
    reply_quality,
    spread_over_intents,
    write_sheet,
)
from core.persona import Persona
from core.prompt import Dialogue
from core.protocols import OUT_OF_SCOPE, GenerationRequest
from core.training.data import BITEXT_CSV, REPO_DATA, load_examples, stratified_split
from core.training.dialogues import load_dialogues

PARAPHRASE_CSV = REPO_DATA / "paraphrase" / "test.csv"
LM_HELD_OUT, LM_SEED = 0.05, 13  # default_lm_config: validation_split, seed


def judge_for(lm_folder: Path, retrain: bool) -> ResponseJudge:
    if not retrain:
        try:
            return ResponseJudge.load(lm_folder)
        except ModelMissing:
            pass
    judge = train_judge(load_dialogues(BITEXT_CSV, LM_SEED), held_out=0.1, seed=13)  # as `chatbot train lm`
    if lm_folder.is_dir():
        judge.save(lm_folder)
    return judge


def held_out(style: str) -> list[Dialogue]:
    """The LM's held-out split (the stratified 5%, seed 13), unmasked, with the persona's style."""
    _, held = stratified_split(load_dialogues(BITEXT_CSV, LM_SEED), LM_HELD_OUT, seed=LM_SEED)
    return [Dialogue(d.text, d.reply, d.intent, style) for d in held]


def lm_quality(
    folder: Path,
    judge: ResponseJudge,
    persona: Persona,
    n: int,
    *,
    sampled: bool = False,
    best_of: int = 1,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """core.evaluation.reply_quality on ``n`` held-out questions with the persona's
    settings (greedy unless ``sampled``; ``best_of`` candidates judged per reply)."""
    from core.best_of import BestOf
    from core.generator import Generator

    generator = BestOf(Generator.from_pretrained(folder, device="cpu"), judge)
    pool = held_out(persona.style)
    settings = persona.generation.model_copy(
        update={"do_sample": sampled, "best_of": best_of, **(overrides or {})}
    )
    out = reply_quality(generator, judge, spread_over_intents(pool, n), pool, settings, facts=persona.facts)
    out |= {"model": str(folder), "built": _metrics(folder)}
    for name in ("single_turn", "multi_turn"):
        generated = [s for s in out[name]["samples"] if _answered_by_lm(persona, s["intent"])]
        out[name]["on_intent_generate_route"] = round(
            sum(s["judged"] == s["intent"] for s in generated) / max(1, len(generated)), 4
        )
        out[name]["n_generate_route"] = len(generated)
    return out


def carrying(
    folder: Path, judge: ResponseJudge, persona: Persona, settings: dict[str, Any]
) -> dict[str, Any]:
    """core.evaluation.reply_quality.reference_carrying with the settings of the run."""
    from core.best_of import BestOf
    from core.generator import Generator
    from core.persona import GenerationSettings

    model = BestOf(Generator.from_pretrained(folder, device="cpu"), judge)
    return reference_carrying(
        model, held_out(persona.style), GenerationSettings.model_validate(settings), style=persona.style
    )


def latency(
    folder: Path, judge: ResponseJudge, persona: Persona, best_of: int, n: int = 12
) -> dict[str, float]:
    """Seconds to answer one message alone (the engine's quiet-hour case), median over
    ``n`` held-out questions, with one reply and with ``best_of`` candidates, sampled
    as the persona samples; the same loaded model for both, alternating."""
    import statistics

    import torch

    from core.best_of import BestOf
    from core.generator import Generator

    model = BestOf(Generator.from_pretrained(folder, device="cpu"), judge)
    questions = spread_over_intents(held_out(persona.style), n)
    times: dict[int, list[float]] = {1: [], best_of: []}
    torch.manual_seed(13)
    for d in questions:
        for k in (1, best_of):
            settings = persona.generation.model_copy(update={"do_sample": True, "best_of": k})
            started = time.perf_counter()
            model.generate([GenerationRequest(d.text, d.intent, d.system, d.history, settings)])
            times[k].append(time.perf_counter() - started)
    one, many = statistics.median(times[1]), statistics.median(times[best_of])
    return {"one_s": round(one, 3), f"best_of_{best_of}_s": round(many, 3), "ratio": round(many / one, 2)}


def _answered_by_lm(persona: Persona, intent: str) -> bool:
    """Whether the persona's routing rules send ``intent`` to the reply model."""
    rules = persona.routing
    route = rules.routes.get(intent, rules.default_route)
    return route == "generate" or (route == "canned" and intent not in rules.canned)


def read_sample_sheet(path: Path) -> list[tuple[str, str, list[str], str]]:
    """``(intent, message, customer's earlier turns, generated reply)`` of each example of
    a sample sheet written by `chatbot eval lm` or `chatbot train lm` (lm-samples.md)."""
    out: list[tuple[str, str, list[str], str]] = []
    for block in re.split(r"^## \d+\. ", path.read_text(encoding="utf-8"), flags=re.M)[1:]:
        head = re.match(r"`([^`]*)`: (.*)", block)
        generated = re.search(r"\*\*Generated\*\*\n\n(.*?)\n\n\*\*Reference\*\*", block, re.S)
        if not head or not generated:
            continue
        earlier = re.findall(r"^> \*\*user\*\*: (.*)$", block.split("**Generated**")[0], re.M)
        reply = "\n".join(
            line[2:] if line.startswith("> ") else "" for line in generated.group(1).splitlines()
        )
        out.append((head.group(1), head.group(2).strip(), earlier, reply.strip()))
    return out


def sample_sheet_quality(path: Path, judge: ResponseJudge, persona: Persona) -> dict[str, Any]:
    """The judge's figures on the replies a sample sheet already holds (no model needed)."""

    # The sheet's messages are masked ("purchase {{Reference 1}}"): give each placeholder a
    # number in message and reply alike, as the generator puts the customer's number back.
    def unmask(text: str) -> str:
        return re.sub(r"\{\{\s*Reference (\d{1,2})\s*\}\}", lambda m: f"10000{m.group(1)}", text)

    rows = [(i, unmask(t), [unmask(x) for x in e], unmask(r)) for i, t, e, r in read_sample_sheet(path)]
    scores = score_replies(
        judge,
        [(intent, reply) for intent, _, _, reply in rows],
        [[*e, t] for _, t, e, _ in rows],
        persona.facts,
    )
    return {
        "sheet": str(path),
        **scores.as_dict(),
        "off_intent": [f"{v.intent} -> {v.judged}" for v in scores.verdicts if not v.on_intent],
    }


def intent_quality(folder: Path, router_threshold: float) -> dict[str, Any]:
    from core.evaluation.intent_report import reliability
    from core.intents import IntentClassifier

    classifier = IntentClassifier.from_pretrained(folder, device="cpu")
    rows = load_examples(PARAPHRASE_CSV)
    predictions = classifier.predict([r.text for r in rows])
    in_scope = [(r, p) for r, p in zip(rows, predictions, strict=True) if r.intent != OUT_OF_SCOPE]
    oos = [p for r, p in zip(rows, predictions, strict=True) if r.intent == OUT_OF_SCOPE]
    confusions = Counter((r.intent, p.label) for r, p in in_scope if p.label != r.intent)
    return {
        "model": str(folder),
        "built": _metrics(folder),
        "oos_method": classifier.oos_method,
        "threshold": round(classifier.threshold, 4),
        "temperature": classifier.temperature,
        "n_in_scope": len(in_scope),
        "n_out_of_scope": len(oos),
        "in_scope_accuracy": round(sum(p.label == r.intent for r, p in in_scope) / len(in_scope), 4),
        "in_scope_top_label_accuracy": round(
            sum(p.top_label == r.intent for r, p in in_scope) / len(in_scope), 4
        ),
        "in_scope_rejected": round(sum(p.label == OUT_OF_SCOPE for _, p in in_scope) / len(in_scope), 4),
        "oos_recall": round(sum(p.label == OUT_OF_SCOPE for p in oos) / len(oos), 4),
        # calibration of the confidence the router reads (top in-scope probability)
        "in_scope_ece": round(
            reliability([p.confidence for _, p in in_scope], [p.top_label == r.intent for r, p in in_scope])[
                "ece"
            ],
            4,
        ),
        # what the router does with the default persona's confidence_threshold: below it
        # the bot asks to rephrase, as it does for out_of_scope
        "router_threshold": router_threshold,
        "router_in_scope_accuracy": round(
            sum(p.label == r.intent and p.confidence >= router_threshold for r, p in in_scope)
            / len(in_scope),
            4,
        ),
        "router_oos_recall": round(
            sum(p.label == OUT_OF_SCOPE or p.confidence < router_threshold for p in oos) / len(oos), 4
        ),
        "oos_answered_as": dict(Counter(p.label for p in oos if p.label != OUT_OF_SCOPE).most_common(8)),
        "top_confusions": [f"{gold} -> {pred} ({k})" for (gold, pred), k in confusions.most_common(10)],
        "errors": [
            {"text": r.text, "gold": r.intent, "predicted": p.label, "confidence": round(p.confidence, 3)}
            for r, p in zip(rows, predictions, strict=True)
            if p.label != r.intent
        ],
    }


def _metrics(folder: Path) -> dict[str, Any]:
    """The training figures that say which model this was (steps, time)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    keep = (
        "steps",
        "epochs",
        "epochs_run",
        "stopped_by_time_budget",
        "train_time_s",
        "val_perplexity",
        "val_accuracy",
        "val_in_scope_accuracy",
        "val_oos_recall",
    )
    return {k: metrics[k] for k in keep if k in metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--lm", default="lm-default", help="LM folder name under --models")
    parser.add_argument("--intent", default="intent-default", help="intent folder name under --models")
    parser.add_argument("--n", type=int, default=80, help="held-out questions for the LM")
    parser.add_argument("--json", type=Path, help="write every figure and sample here")
    parser.add_argument("--skip-lm", action="store_true")
    parser.add_argument(
        "--sampled", action="store_true", help="sample as the engine does (seeded), not greedy"
    )
    parser.add_argument(
        "--best-of", type=int, default=1, help="candidates per reply, judged (with --sampled)"
    )
    parser.add_argument("--latency", action="store_true", help="time one message alone, 1 vs --best-of")
    parser.add_argument("--carrying", action="store_true", help="reference numbers across turns")
    parser.add_argument("--sheet", type=Path, help="write the multi-turn replies as a sample sheet here")
    parser.add_argument("--repetition-penalty", type=float, help="override the persona's")
    parser.add_argument(
        "--history-scope", choices=("topic", "all"), help="override the persona's (core.prompt.scope_history)"
    )
    parser.add_argument("--skip-intent", action="store_true")
    parser.add_argument("--retrain-judge", action="store_true")
    parser.add_argument(
        "--samples",
        type=Path,
        action="append",
        default=[],
        help="also judge the replies of this sample sheet",
    )
    args = parser.parse_args()
    persona = load_persona_file(DEFINITIONS / "support.yaml")
    report: dict[str, Any] = {}

    judge = judge_for(args.models / args.lm, args.retrain_judge)
    report["judge"] = {
        "held_out_accuracy": round(judge.held_out_accuracy, 4),
        "n_train": judge.n_train,
        "n_held_out": judge.n_held_out,
    }
    print(
        f"judge: held-out accuracy {judge.held_out_accuracy:.2%} "
        f"({judge.n_held_out} responses; trained on {judge.n_train})"
    )

    # The training data's own replies: where a model learns invented numbers and slot habits.
    bitext = load_examples(BITEXT_CSV)
    refs = score_replies(
        judge, [(e.intent, e.response) for e in bitext], [[e.text] for e in bitext], persona.facts
    )
    invented = Counter(x for v in refs.verdicts for x in v.invented)
    report["bitext_references"] = refs.as_dict() | {"most_invented": dict(invented.most_common(5))}
    print(
        f"bitext reference replies n={refs.n}: invented number {refs.invented_number:.1%} "
        f"({sum(bool(v.invented) for v in refs.verdicts)}; most: {dict(invented.most_common(3))}), "
        f"unfilled slot {refs.unfilled_slot:.1%} ({sum(v.unfilled_slot for v in refs.verdicts)})"
    )

    for sheet in args.samples:
        result = report.setdefault("sample_sheets", {})[str(sheet)] = sample_sheet_quality(
            sheet, judge, persona
        )
        print(
            f"sample sheet {sheet} n={result['n']}: on-intent {result['on_intent']:.1%}, invented number "
            f"{result['invented_number']:.1%}, unfilled slot {result['unfilled_slot']:.1%}; "
            f"off intent: {', '.join(result['off_intent'])}"
        )

    if not args.skip_lm:
        chosen = (("repetition_penalty", args.repetition_penalty), ("history_scope", args.history_scope))
        overrides = {k: v for k, v in chosen if v is not None}
        lm = report["lm"] = lm_quality(
            args.models / args.lm,
            judge,
            persona,
            args.n,
            sampled=args.sampled,
            best_of=args.best_of,
            overrides=overrides,
        )
        print(f"lm {lm['model']} {lm['built']} settings {lm['settings']}")
        for name in ("single_turn", "multi_turn"):
            s = lm[name]
            print(
                f"  {name:11s} n={s['n']}: on-intent {s['on_intent']:.1%} (LM-routed intents "
                f"{s['on_intent_generate_route']:.1%} of {s['n_generate_route']}), invented number "
                f"{s['invented_number']:.1%} ({round(s['invented_number'] * s['n'])}; after the guard "
                f"{s['invented_number_after_guard']:.1%}), unfilled slot "
                f"{s['unfilled_slot']:.1%} ({round(s['unfilled_slot'] * s['n'])}); {s['generation_s']} s"
            )
            print(
                f"    earlier turns given {s['earlier_turns_given']}, of them in the prompt "
                f"{s['earlier_turns_in_prompt']}; guard changed {s['guard_replaced_replies']} replies, "
                f"{s['guard_lost_point']} lost their point"
            )
        if args.sheet:
            write_sheet(args.sheet, lm, limit=args.n)
            print(f"  multi-turn sample sheet: {args.sheet}")
        if args.carrying:
            lm["reference_carrying"] = carrying(args.models / args.lm, judge, persona, lm["settings"])
            c = lm["reference_carrying"]
            print(
                f"  reference numbers: carried into an unrelated reply {c['unrelated']['carried']:.1%} of "
                f"{c['unrelated']['n']}; into a reply to a message pointing back "
                f"{c['related']['carried']:.1%} of {c['related']['n']}"
            )
        if args.latency and args.best_of > 1:
            lm["latency"] = latency(args.models / args.lm, judge, persona, args.best_of)
            print(f"  latency of one message alone: {lm['latency']}")

    if not args.skip_intent:
        it = report["intent"] = intent_quality(
            args.models / args.intent, persona.routing.confidence_threshold
        )
        print(
            f"intent {it['model']} {it['built']} (oos {it['oos_method']}, threshold {it['threshold']}, "
            f"temperature {it['temperature']}, in-scope ECE {it['in_scope_ece']})"
        )
        print(
            f"  paraphrase set: in-scope accuracy {it['in_scope_accuracy']:.1%} of {it['n_in_scope']} "
            f"(top label {it['in_scope_top_label_accuracy']:.1%}, "
            f"rejected as OOS {it['in_scope_rejected']:.1%}); "
            f"OOS recall {it['oos_recall']:.1%} of {it['n_out_of_scope']}"
        )
        print(
            f"  with the router's confidence threshold {it['router_threshold']}: in-scope answered right "
            f"{it['router_in_scope_accuracy']:.1%}, OOS not answered {it['router_oos_recall']:.1%}"
        )
        print(f"  OOS messages answered as: {it['oos_answered_as']}")
        print(f"  top confusions: {'; '.join(it['top_confusions'])}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
