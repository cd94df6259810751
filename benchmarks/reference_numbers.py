"""Does the reply repeat the customer's order/invoice number, or invent one?

    python -m benchmarks.reference_numbers models/lm-default [OTHER_MODEL ...] [--unmasked]

Takes the held-out rows of the LM's validation split (the same stratified 5%, seed 13,
that `chatbot train lm --default` keeps out of training) whose message contains a
reference number, generates greedily through `Generator` (which masks numbers as
``{{Reference N}}`` and puts them back), and counts replies that repeat the customer's
number, that contain some other number, or that contain none. ``--unmasked`` feeds the
digits as they are, for a model trained before masking existed (the baseline).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from core.generator import Generator
from core.persona import GenerationSettings
from core.protocols import GenerationRequest
from core.training.data import BITEXT_CSV, load_examples, stratified_split

NUMBER = re.compile(r"\d[\d-]{2,}\d")


def score(model: Path, unmasked: bool = False) -> dict[str, int]:
    _, held = stratified_split(load_examples(BITEXT_CSV), 0.05, seed=13)
    rows = [e for e in held if NUMBER.search(e.text)]
    gen = Generator.from_pretrained(model, device="cpu")
    gen.mask_references = not unmasked
    settings = GenerationSettings(do_sample=False, max_new_tokens=80)
    replies = gen.generate([GenerationRequest(text=e.text, intent=e.intent, settings=settings) for e in rows])
    counts = {"messages": len(rows), "repeats_theirs": 0, "invents_another": 0, "no_number": 0}
    for row, reply in zip(rows, replies, strict=False):
        theirs, said = set(NUMBER.findall(row.text)), set(NUMBER.findall(reply))
        if said - theirs:
            counts["invents_another"] += 1
        elif said:
            counts["repeats_theirs"] += 1
        else:
            counts["no_number"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--unmasked", action="store_true", help="prompts keep their digits (baseline)")
    args = parser.parse_args()
    for model in args.models:
        print(model, "unmasked" if args.unmasked else "masked", score(model, args.unmasked))


if __name__ == "__main__":
    main()
