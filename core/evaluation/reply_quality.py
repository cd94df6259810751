"""The reply-quality report: what a support team asks of the LM's replies.

Beside perplexity, ROUGE-L and BLEU (``core.evaluation.lm_report``), on held-out
questions the LM never trained on, once single-turn and once with 1-3 unrelated earlier
exchanges in the history (``core.evaluation.judge.multi_turn_examples``):

- the share of replies **on intent**, by the reply judge (a response classifier; its own
  held-out accuracy is reported with it);
- the share with an **invented number** (4+ digits, an amount or a phone number that no
  customer turn and no persona fact holds), in the model's reply filled from the
  persona's facts, and in what the customer gets after the fact guard
  (``core.finishing``);
- the share with **unfilled-slot phrasing**;
- how many earlier turns reached the prompt (a multi-turn figure means nothing if the
  history was cut away).

:func:`reply_quality` returns the figures and the replies; :func:`write_sheet` writes a
sample sheet with the multi-turn examples.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.evaluation.judge import ResponseJudge, multi_turn_examples, score_replies
from core.facts import guard_reply
from core.history import Turn
from core.persona import GenerationSettings
from core.prompt import USER, Dialogue, build_prompt_ids, mask_request, scope_history, special_ids
from core.protocols import GenerationRequest
from core.slots import REFERENCE_NUMBER, fill_slots


def spread_over_intents(dialogues: Sequence[Dialogue], n: int) -> list[Dialogue]:
    """Up to ``n`` of ``dialogues``, one intent after another (sorted), in data order."""
    by_intent: dict[str, list[Dialogue]] = {}
    for d in dialogues:
        by_intent.setdefault(d.intent, []).append(d)
    queues = [list(reversed(by_intent[i])) for i in sorted(by_intent)]
    chosen: list[Dialogue] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


def reply_quality(
    generator: Any,
    judge: ResponseJudge,
    questions: Sequence[Dialogue],
    pool: Sequence[Dialogue],
    settings: GenerationSettings,
    *,
    style: str | None = None,
    facts: Mapping[str, str] | None = None,
    batch_size: int = 16,
    seed: int = 13,
) -> dict[str, Any]:
    """Single- and multi-turn figures for ``questions`` (unmasked, with intents), the
    history drawn from ``pool``; ``style`` (else each question's own) and ``facts`` are
    the persona's. Sampling settings are seeded with ``seed``."""
    import torch

    facts = dict(facts or {})
    asked = [d if style is None else Dialogue(d.text, d.reply, d.intent, style, d.history) for d in questions]
    report: dict[str, Any] = {
        "judge": {
            "held_out_accuracy": round(judge.held_out_accuracy, 4),
            "n_train": judge.n_train,
            "n_held_out": judge.n_held_out,
        },
        "settings": settings.model_dump(),
    }
    for name, examples in (
        ("single_turn", asked),
        ("multi_turn", multi_turn_examples(asked, pool, seed=seed)),
    ):
        started = time.perf_counter()
        torch.manual_seed(seed)
        requests = [GenerationRequest(d.text, d.intent, d.system, d.history, settings) for d in examples]
        replies = [
            r
            for s in range(0, len(requests), batch_size)
            for r in generator.generate(requests[s : s + batch_size])
        ]
        said = [[t.text for t in d.history if t.role == "user"] + [d.text] for d in examples]
        scores = score_replies(
            judge, [(d.intent, r) for d, r in zip(examples, replies, strict=True)], said, facts
        )
        guarded = [guard_reply(fill_slots(r, facts), c, facts) for r, c in zip(replies, said, strict=True)]
        after = score_replies(
            judge,
            [(d.intent, g.text) for d, g in zip(examples, guarded, strict=True)],
            said,
            facts,
            fill=False,
        )
        report[name] = scores.as_dict() | {
            "invented_number_after_guard": round(after.invented_number, 4),
            "on_intent_after_guard": round(after.on_intent, 4),
            "guard_replaced_replies": sum(1 for g in guarded if g.replaced),
            "guard_lost_point": sum(1 for g in guarded if g.lost_point),
            "earlier_turns_given": round(
                sum(len(d.history) // 2 for d in examples) / max(1, len(examples)), 2
            ),
            "earlier_turns_in_prompt": round(
                sum(_turns_in_prompt(generator, r) for r in requests) / max(1, len(requests)), 2
            ),
            "generation_s": round(time.perf_counter() - started, 1),
            "samples": [
                {
                    "intent": d.intent,
                    "judged": v.judged,
                    "text": d.text,
                    "history": [[t.role, t.text] for t in d.history],
                    "reply": r,
                    "shown": g.text,
                    "invented": list(v.invented),
                    "unfilled_slot": v.unfilled_slot,
                }
                for d, r, g, v in zip(examples, replies, guarded, scores.verdicts, strict=True)
            ],
        }
    return report


def reference_carrying(
    generator: Any,
    held_out: Sequence[Dialogue],
    settings: GenerationSettings,
    *,
    n: int = 40,
    style: str = "",
    batch_size: int = 16,
    seed: int = 13,
) -> dict[str, Any]:
    """Does a reply carry a reference number across turns only when it should?

    From ``held_out`` (unmasked): **unrelated**, up to ``n`` messages without a number,
    each after one earlier exchange of another intent that names one ("where is my
    order 12345?", then "I want to cancel my order"): a reply that names the number
    carried it wrongly. **related**: every message that names an order, purchase, invoice
    or bill by number, rewritten to point back to it ("cancel that purchase") after an
    earlier exchange about the same number (``core.training.multi_turn``): a reply that
    names the number carried it rightly."""
    import random

    import torch

    from core.training.multi_turn import with_earlier_turns

    rng = random.Random(seed)
    numbered = [d for d in held_out if REFERENCE_NUMBER.search(d.text)]
    related = [d for d in with_earlier_turns(numbered, 1.0, related=1.0, seed=seed) if d.history]
    unrelated = []
    for d in spread_over_intents([d for d in held_out if not REFERENCE_NUMBER.search(d.text)], n):
        others = [e for e in numbered if e.intent != d.intent]
        if others:
            earlier = others[rng.randrange(len(others))]
            # stored as the engine stores them: each turn with its intent
            turns = (
                Turn("user", earlier.text, 0.0, intent=earlier.intent),
                Turn("bot", earlier.reply, 0.0, intent=earlier.intent),
            )
            unrelated.append(Dialogue(d.text, d.reply, d.intent, d.system, turns))
    out: dict[str, Any] = {}
    for name, examples in (("unrelated", unrelated), ("related", related)):
        torch.manual_seed(seed)
        requests = [
            GenerationRequest(d.text, d.intent, style or d.system, d.history, settings) for d in examples
        ]
        replies = [
            r
            for s in range(0, len(requests), batch_size)
            for r in generator.generate(requests[s : s + batch_size])
        ]
        carried = [
            any(
                m.group(0) in r
                for t in d.history
                if t.role == "user"
                for m in REFERENCE_NUMBER.finditer(t.text)
            )
            for d, r in zip(examples, replies, strict=True)
        ]
        out[name] = {
            "n": len(examples),
            "carried": round(sum(carried) / max(1, len(examples)), 4),
            "samples": [
                {"history": [[t.role, t.text] for t in d.history], "text": d.text, "reply": r}
                for d, r in zip(examples[:6], replies, strict=False)
            ],
        }
    return out


def _turns_in_prompt(generator: Any, request: GenerationRequest) -> int:
    """Earlier customer turns that reach the prompt beside the reply's room."""
    prompt = build_prompt_ids(
        generator.tokenizer,
        mask_request(scope_history(request))[0],
        generator.context_window,
        generator.max_new_tokens(request.settings),
    )
    return prompt.count(special_ids(generator.tokenizer)[USER]) - 1


def summary(report: Mapping[str, Any]) -> dict[str, float]:
    """The headline figures, flat (for metrics.json and the model card)."""
    single, multi = report["single_turn"], report["multi_turn"]
    return {
        "judge_held_out_accuracy": report["judge"]["held_out_accuracy"],
        "on_intent": single["on_intent"],
        "on_intent_multi_turn": multi["on_intent"],
        "invented_number": single["invented_number"],
        "invented_number_multi_turn": multi["invented_number"],
        "invented_number_after_guard": max(
            single["invented_number_after_guard"], multi["invented_number_after_guard"]
        ),
        "unfilled_slot": single["unfilled_slot"],
        "unfilled_slot_multi_turn": multi["unfilled_slot"],
        "earlier_turns_in_prompt": multi["earlier_turns_in_prompt"],
    }


def write_sheet(path: Path, report: Mapping[str, Any], limit: int = 12) -> None:
    """A sample sheet of multi-turn replies: history, message, reply as the customer
    gets it, and the judge's verdict."""
    s = summary(report)
    lines = [
        "# Reply quality samples",
        "",
        f"judge held-out accuracy {s['judge_held_out_accuracy']:.2%} · on intent {s['on_intent']:.1%} "
        f"single-turn, {s['on_intent_multi_turn']:.1%} with 1-3 earlier turns · invented numbers "
        f"{s['invented_number']:.1%} / {s['invented_number_multi_turn']:.1%} (after the guard "
        f"{s['invented_number_after_guard']:.1%}) · unfilled-slot phrasing {s['unfilled_slot']:.1%}",
        "",
    ]
    for k, sample in enumerate(report["multi_turn"]["samples"][:limit], 1):
        verdict = "on intent" if sample["judged"] == sample["intent"] else f"judged `{sample['judged']}`"
        lines += [f"## {k}. `{sample['intent']}` ({verdict})", ""]
        lines += [f"> **{role}**: {text.splitlines()[0] if text else ''}" for role, text in sample["history"]]
        lines += [
            f"> **user**: {sample['text']}",
            "",
            "**Reply** (as sent, after slots and the fact guard)",
            "",
        ]
        lines += [f"> {line}" if line else ">" for line in (sample["shown"] or "(empty)").splitlines()] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
