"""Keep evaluation text out of training: drop any training or validation example that
is a line of a held-out evaluation set, or contains one.

Generated rewrites and templates say common requests in common words, and the data
sets themselves hold near-copies ("do you ship to Canada?" is a Bitext row and, without
the question mark, a line of the hand-written paraphrase set), so a line can reach the
training data without anyone copying it. The intent data builder removes them, the way
language-model pipelines decontaminate against benchmarks; the evaluation set is only
read to be excluded.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

from core.training.data import REPO_DATA, Example

HELD_OUT = (REPO_DATA / "paraphrase" / "test.csv",)
MIN_WORDS_INSIDE = 5  # a held-out line this long is also caught inside a longer text


def normalise(text: str) -> str:
    """Lower case, words and digits only, single spaces; a line of symbols stays whole."""
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split()) or text.strip().lower()


def held_out_texts(paths: Iterable[Path] = HELD_OUT) -> list[str]:
    """The ``text`` column of each evaluation CSV that exists (an install without the
    bundled data has none)."""
    texts: list[str] = []
    for path in paths:
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as fh:
                texts += [row["text"] for row in csv.DictReader(fh) if row.get("text")]
    return texts


def decontaminate(examples: list[Example], held_out: list[str]) -> list[Example]:
    """``examples`` without those equal to a held-out line (case, punctuation and spacing
    ignored) or containing a held-out line of ``MIN_WORDS_INSIDE``+ words."""
    exact = {normalise(t) for t in held_out}
    inside = [f" {t} " for t in exact if len(t.split()) >= MIN_WORDS_INSIDE]
    kept = []
    for e in examples:
        text = normalise(e.text)
        if text in exact or any(line in f" {text} " for line in inside):
            continue
        kept.append(e)
    return kept
