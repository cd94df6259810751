"""Reply quality of the default models, as a support team would judge it.

    python -m benchmarks.reply_quality [--models models] [--lm lm-default]
        [--intent intent-default] [--n 80] [--json FILE] [--samples SHEET.md]
        [--skip-lm] [--skip-intent] [--retrain-judge] [--sampled]

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
   them), share with unfilled-slot phrasing;
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
from core.evaluation.judge import ResponseJudge, multi_turn_examples, score_replies, train_judge
from core.persona import Persona
from core.prompt import Dialogue
from core.protocols import OUT_OF_SCOPE, GenerationRequest
from core.training.data import BITEXT_CSV, REPO_DATA, load_examples, stratified_split

PARAPHRASE_CSV = REPO_DATA / "paraphrase" / "test.csv"
LM_HELD_OUT, LM_SEED = 0.05, 13  # default_lm_config: validation_split, seed


def judge_for(lm_folder: Path, retrain: bool) -> ResponseJudge:
    if not retrain:
        try:
            return ResponseJudge.load(lm_folder)
        except ModelMissing:
            pass
    examples = load_examples(BITEXT_CSV)
    judge = train_judge([Dialogue(e.text, e.response, e.intent) for e in examples], held_out=0.1, seed=13)
    if lm_folder.is_dir():
        judge.save(lm_folder)
    return judge


def held_out_questions(n: int, style: str) -> tuple[list[Dialogue], list[Dialogue]]:
    """``n`` held-out exchanges spread over the intents, and the whole held-out split."""
    _, held = stratified_split(load_examples(BITEXT_CSV), LM_HELD_OUT, seed=LM_SEED)
    dialogues = [Dialogue(e.text, e.response, e.intent, style) for e in held]
    by_intent: dict[str, list[Dialogue]] = {}
    for d in dialogues:
        by_intent.setdefault(d.intent, []).append(d)
    chosen: list[Dialogue] = []
    while len(chosen) < n and any(by_intent.values()):
        for intent in sorted(by_intent):
            if by_intent[intent] and len(chosen) < n:
                chosen.append(by_intent[intent].pop(0))
    return chosen, dialogues


def lm_quality(
    folder: Path, judge: ResponseJudge, persona: Persona, n: int, sampled: bool = False
) -> dict[str, Any]:
    import torch

    from core.generator import Generator
    from core.prompt import USER, build_prompt_ids, mask_request, special_ids

    generator = Generator.from_pretrained(folder, device="cpu")
    chosen, pool = held_out_questions(n, persona.style)
    # The default persona's generation settings: greedy so the figures repeat, or as the
    # engine samples (temperature 0.7, top-p 0.9) from a fixed seed with --sampled.
    settings = persona.generation.model_copy(update={"do_sample": sampled})
    user_id = special_ids(generator.tokenizer)[USER]
    out: dict[str, Any] = {"model": str(folder), "built": _metrics(folder), "settings": settings.model_dump()}
    for name, examples in (
        ("single_turn", chosen),
        ("multi_turn", multi_turn_examples(chosen, pool, seed=13)),
    ):
        started = time.perf_counter()
        torch.manual_seed(13)
        replies: list[str] = []
        for s in range(0, len(examples), 16):
            replies += generator.generate(
                [
                    GenerationRequest(d.text, d.intent, d.system, d.history, settings)
                    for d in examples[s : s + 16]
                ]
            )
        conversations = [[t.text for t in d.history if t.role == "user"] + [d.text] for d in examples]
        scores = score_replies(
            judge,
            [(d.intent, r) for d, r in zip(examples, replies, strict=True)],
            conversations,
            persona.facts,
        )
        # earlier turns that fit in the prompt beside the reply's room (the rest are dropped)
        in_prompt = [
            build_prompt_ids(
                generator.tokenizer,
                mask_request(GenerationRequest(d.text, d.intent, d.system, d.history, settings))[0],
                generator.context_window,
                min(settings.max_new_tokens, generator.context_window - 16),
            ).count(user_id)
            - 1
            for d in examples
        ]
        generated = [v for v in scores.verdicts if _answered_by_lm(persona, v.intent)]
        out[name] = scores.as_dict() | {
            # the intents the default persona answers with the LM (not canned, not escalated)
            "on_intent_generate_route": round(
                sum(v.on_intent for v in generated) / max(1, len(generated)), 4
            ),
            "n_generate_route": len(generated),
            "generation_s": round(time.perf_counter() - started, 1),
            "fact_guard": _guard_effect(replies, conversations, persona),
            "earlier_turns_given": round(sum(len(d.history) // 2 for d in examples) / len(examples), 2),
            "earlier_user_turns_in_prompt": round(sum(in_prompt) / len(examples), 2),
        }
        out[name]["samples"] = [
            {
                "intent": v.intent,
                "judged": v.judged,
                "text": d.text,
                "history_turns": len(d.history) // 2,
                "reply": r,
                "invented": list(v.invented),
            }
            for d, r, v in zip(examples, replies, scores.verdicts, strict=True)
        ]
    return out


def _answered_by_lm(persona: Persona, intent: str) -> bool:
    """Whether the persona's routing rules send ``intent`` to the reply model."""
    rules = persona.routing
    route = rules.routes.get(intent, rules.default_route)
    return route == "generate" or (route == "canned" and intent not in rules.canned)


def _guard_effect(replies: list[str], conversations: list[list[str]], persona: Persona) -> dict[str, int]:
    """What core.facts.guard_reply would change in these replies (filled as the engine fills)."""
    from core.facts import guard_reply
    from core.slots import fill_slots

    guarded = [
        guard_reply(fill_slots(r, persona.facts), c, persona.facts)
        for r, c in zip(replies, conversations, strict=True)
    ]
    return {
        "replies_changed": sum(1 for g in guarded if g.replaced),
        "items_replaced": sum(g.replaced for g in guarded),
        "lost_point": sum(1 for g in guarded if g.lost_point),
    }


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
        lm = report["lm"] = lm_quality(args.models / args.lm, judge, persona, args.n, args.sampled)
        print(f"lm {lm['model']} {lm['built']}")
        for name in ("single_turn", "multi_turn"):
            s = lm[name]
            print(
                f"  {name:11s} n={s['n']}: on-intent {s['on_intent']:.1%} (LM-routed intents "
                f"{s['on_intent_generate_route']:.1%} of {s['n_generate_route']}), invented number "
                f"{s['invented_number']:.1%} ({round(s['invented_number'] * s['n'])}), unfilled slot "
                f"{s['unfilled_slot']:.1%} ({round(s['unfilled_slot'] * s['n'])}); {s['generation_s']} s"
            )
            print(
                f"    earlier turns given {s['earlier_turns_given']}, of them in the prompt "
                f"{s['earlier_user_turns_in_prompt']}; fact guard {s['fact_guard']}"
            )

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
