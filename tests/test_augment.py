"""Paraphrase-style augmentation: rewrites keep their intent and change the text, and no
generated training line (rewrites, casual templates, out-of-scope text) is a line of
the hand-written paraphrase test set, which must stay unseen."""

from __future__ import annotations

import random

from core.protocols import OUT_OF_SCOPE
from core.training.augment import SYNONYMS, augment, casual_examples, rewrite
from core.training.casual_templates import templates
from core.training.config import default_intent_config
from core.training.data import BITEXT_CSV, REPO_DATA, Example, load_examples
from core.training.decontaminate import decontaminate, held_out_texts, normalise
from core.training.intent_data import split_examples
from core.training.out_of_scope import generate_oos
from core.training.small_talk import SMALL_TALK_INTENTS

PARAPHRASE_CSV = REPO_DATA / "paraphrase" / "test.csv"


def _leaks(texts: list[str]) -> list[str]:
    """Texts that equal a paraphrase-set line (case, punctuation, spacing ignored) or
    contain one of 5+ words: written here on its own, not with ``decontaminate``."""
    lines = [normalise(e.text) for e in load_examples(PARAPHRASE_CSV)]
    exact, long = set(lines), [t for t in lines if len(t.split()) >= 5]
    padded = {t: f" {normalise(t)} " for t in texts}
    return [t for t in texts if padded[t][1:-1] in exact or any(f" {x} " in padded[t] for x in long)]


def test_the_default_build_trains_and_validates_on_no_test_sentence() -> None:
    cfg = default_intent_config("unused")
    assert cfg.augment > 0 and cfg.casual > 0  # the default recipe does augment
    train, val = split_examples(cfg)
    assert len(train) > 10_000 and _leaks([e.text for e in train + val]) == []
    # the generators themselves make none at the default sizes: decontamination only
    # has Bitext's own near-copies to remove ("do you ship to Canada?")
    casual = casual_examples(set(templates()), cfg.casual, cfg.seed)
    assert _leaks([e.text for e in casual] + generate_oos(seed=cfg.seed)) == []
    bitext = load_examples(BITEXT_CSV)
    assert 0 < len(_leaks([e.text for e in bitext])) <= 3


def test_generators_at_large_sizes_never_produce_a_test_sentence() -> None:
    many = casual_examples(set(templates()), per_intent=400, seed=5)
    assert len(many) > 30 * 150  # large enough that a leak would show
    rewrites = augment(load_examples(BITEXT_CSV), copies=3.0, seed=5)
    assert _leaks([e.text for e in many + rewrites] + generate_oos(2000, seed=5)) == []


def test_decontaminate_drops_copies_and_texts_holding_them() -> None:
    held = ["Where has my parcel gone??", "so i want to cancel the thing"]
    rows = [
        Example("where has my parcel gone", "track_order"),  # same line, other case/punctuation
        Example("WHERE HAS MY PARCEL GONE!!!", "track_order"),
        Example("hi, so I want to cancel the thing, thanks", "cancel_order"),  # 7 words, inside
        Example("where has my parcel", "track_order"),  # part of a line: kept
        Example("hi, where has my parcel gone", "track_order"),  # a 5-word line inside: dropped
        Example("cancel the thing", "cancel_order"),
    ]
    kept = decontaminate(rows, held)
    assert [e.text for e in kept] == ["where has my parcel", "cancel the thing"]
    assert decontaminate(rows, []) == rows
    assert len(held_out_texts()) == len(load_examples(PARAPHRASE_CSV)) == 398
    # a held-out line of fewer than 5 words is only dropped whole, never inside a text
    assert decontaminate([Example("hi, track my parcel please", "x")], ["track my parcel"]) != []


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
