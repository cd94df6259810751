"""The hand-written paraphrase test set: well formed, covering every intent of the
default classifier, and never a copy of training or public evaluation text."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from core.protocols import OUT_OF_SCOPE
from core.training.data import REPO_DATA, load_examples
from core.training.small_talk import _PHRASES, SMALL_TALK_INTENTS, generate_small_talk

PARAPHRASE_CSV = REPO_DATA / "paraphrase" / "test.csv"


def _rows() -> list[dict[str, str]]:
    with PARAPHRASE_CSV.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["text", "intent"]
        return list(reader)


def _texts(path: Path, column: str) -> set[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {row[column].strip().lower() for row in csv.DictReader(fh)}


def test_every_default_intent_is_covered_and_out_of_scope_is_large_enough() -> None:
    rows = _rows()
    counts = Counter(row["intent"] for row in rows)
    bitext_intents = {e.intent for e in load_examples(REPO_DATA / "bitext" / "train.csv")}
    expected = bitext_intents | set(SMALL_TALK_INTENTS)
    assert set(counts) == expected | {OUT_OF_SCOPE}
    assert min(counts[i] for i in expected) >= 10
    assert sum(counts[i] for i in expected) >= 300
    assert counts[OUT_OF_SCOPE] >= 60


def test_messages_are_unique_and_non_empty() -> None:
    texts = [row["text"].strip().lower() for row in _rows()]
    assert all(texts)
    assert [t for t, n in Counter(texts).items() if n > 1] == []


def test_no_message_is_copied_from_training_or_public_data() -> None:
    """Case-insensitive verbatim check against Bitext, BANKING77 (train and test) and
    the small-talk phrases the default classifier trains on."""
    seen = _texts(REPO_DATA / "bitext" / "train.csv", "instruction")
    for name in ("train.csv", "test.csv"):
        seen |= _texts(REPO_DATA / "banking77" / name, "text")
    seen |= {e.text.strip().lower() for e in generate_small_talk()}
    seen |= {p.lower() for phrases in _PHRASES.values() for p in phrases}
    assert len(seen) > 10_000  # the sources were read
    copied = [row["text"] for row in _rows() if row["text"].strip().lower() in seen]
    assert copied == []
