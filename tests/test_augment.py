"""Paraphrase-style augmentation: rewrites keep their intent and change the text, and no
generated training line (rewrites, casual templates, out-of-scope text) is a line of
the hand-written paraphrase test set, which must stay unseen."""

from __future__ import annotations

import random
import re

from core.protocols import OUT_OF_SCOPE
from core.training.augment import SYNONYMS, augment, casual_examples, rewrite
from core.training.casual_templates import templates
from core.training.config import default_intent_config
from core.training.data import BITEXT_CSV, REPO_DATA, Example, load_examples
from core.training.intent_data import split_examples
from core.training.out_of_scope import generate_oos
from core.training.small_talk import SMALL_TALK_INTENTS

PARAPHRASE_CSV = REPO_DATA / "paraphrase" / "test.csv"


def _norm(text: str) -> str:
    """Lower case, letters and digits only, single spaces: catches a copy that differs
    only in case, punctuation or spacing."""
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def _test_lines() -> list[str]:
    return [_norm(e.text) for e in load_examples(PARAPHRASE_CSV)]


def _leaks(texts: list[str]) -> list[str]:
    """Generated texts equal to a test line, or containing a test line of 5+ words."""
    lines = _test_lines()
    exact = set(lines)
    long = [t for t in lines if len(t.split()) >= 5]
    found = []
    for text in texts:
        n = _norm(text)
        if n in exact or any(f" {t} " in f" {n} " for t in long):
            found.append(text)
    return found


def test_the_default_build_trains_and_validates_on_no_test_sentence() -> None:
    cfg = default_intent_config("unused")
    train, val = split_examples(cfg)
    assert len(_test_lines()) == 398
    assert cfg.augment > 0 and cfg.casual > 0  # the default recipe does augment
    assert _leaks([e.text for e in train + val]) == []


def test_generators_at_large_sizes_never_produce_a_test_sentence() -> None:
    every_intent = set(templates())
    many = casual_examples(every_intent, per_intent=400, seed=5)
    assert len(many) > 30 * 150  # large enough that a leak would show
    rewrites = augment(load_examples(BITEXT_CSV), copies=3.0, seed=5)
    assert _leaks([e.text for e in many + rewrites] + generate_oos(2000, seed=5)) == []


def test_the_leak_check_itself_finds_a_copy() -> None:
    line = load_examples(PARAPHRASE_CSV)[0].text
    assert _leaks([line.upper() + "!!", "hi, " + line + " thanks", "something else"]) == [
        line.upper() + "!!",
        "hi, " + line + " thanks",
    ]


def test_rewrites_keep_the_intent_and_change_the_text() -> None:
    source = [Example("I need help to cancel purchase 12345 please", "cancel_order")] * 50
    out = augment(source, copies=1.0, seed=3)
    assert len(out) > 35 and {e.intent for e in out} == {"cancel_order"}
    assert len({e.text for e in out}) > 30  # varied, not one rewrite repeated
    assert augment(source, copies=1.0, seed=3) == out  # deterministic
    # the kinds of change promised: lower case, synonyms, wrappers/context, typos
    texts = [rewrite("I need help to cancel purchase 12345 please", random.Random(i)) for i in range(300)]
    assert any(t == t.lower() and "?" not in t for t in texts)
    assert any(w in t for t in texts for w in SYNONYMS["cancel"])
    assert any(t.startswith(("could you please", "hi, ", "long story short")) for t in texts)
    assert any(
        "purchase" not in t and "order" not in t and "package" not in t for t in texts
    )  # typo/drop/swap


def test_casual_examples_cover_every_default_intent() -> None:
    intents = {e.intent for e in load_examples(BITEXT_CSV)} | set(SMALL_TALK_INTENTS)
    assert set(templates()) == intents
    out = casual_examples(intents, per_intent=20, seed=1)
    counts = {i: sum(e.intent == i for e in out) for i in intents}
    assert min(counts.values()) >= 10 and OUT_OF_SCOPE not in counts
    assert not [e.text for e in out if "{" in e.text or "}" in e.text]  # every slot filled
