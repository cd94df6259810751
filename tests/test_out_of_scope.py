"""The generated out-of-scope text holds the kinds customers send a support bot that it
cannot serve (gibberish and keyboard mashing, other languages, other businesses'
questions), is deterministic, and never repeats a line of the hand-written test set."""

from __future__ import annotations

import re

from core.protocols import OUT_OF_SCOPE
from core.training.data import REPO_DATA, load_examples
from core.training.oos_templates import FOREIGN, TEMPLATES
from core.training.out_of_scope import foreign_messages, generate_gibberish, generate_oos, load_oos

ENGLISH_WORDS = {"the", "my", "i", "is", "a", "to", "you", "what", "how", "order", "can"}


def test_auto_oos_has_gibberish_other_languages_and_other_businesses() -> None:
    texts = generate_oos(seed=13)
    assert texts == generate_oos(seed=13) and len(texts) == len(set(texts)) > 600
    gibberish = [t for t in generate_gibberish(133, seed=13) if not set(t.lower().split()) & ENGLISH_WORDS]
    rows = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
    walks = {row[i : i + 4] for row in rows for i in range(len(row) - 3)}
    mashing = [t for t in texts if any(w in t.lower() for w in walks) or re.search(r"(\w)\1{4,}", t)]
    non_latin = [
        t
        for t in texts
        if re.search(r"[\u0400-\u04ff\u0600-\u06ff\u0900-\u097f\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]", t)
    ]
    accented = [t for t in texts if re.search(r"[àâçéèêëîïôûùüÿñæœäöüßąęłńśźżığş]", t.lower())]
    patterns = [
        re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(tpl)) + "$")
        for tpl in TEMPLATES["other businesses"]
    ]
    business = [t for t in texts if any(p.match(t) for p in patterns)]
    assert len(gibberish) >= 120 and set(gibberish) <= set(texts) and len(mashing) >= 25
    assert len(non_latin) >= 40 and len(accented) >= 30  # Chinese, Japanese, Korean, Russian, ...
    assert len(FOREIGN) >= 10 and set(foreign_messages()) <= set(texts)
    assert (
        len(business) >= 60 and any("flight" in t for t in business) and any("bitcoin" in t for t in business)
    )
    # none of it says hello: greetings are the small-talk intents
    assert not [t for t in texts if t.lower().startswith(("hi ", "hello", "good morning"))]


def test_gibberish_is_varied_and_deterministic() -> None:
    a = generate_gibberish(150, seed=1)
    assert a == generate_gibberish(150, seed=1) and len(set(a)) == 150
    assert a != generate_gibberish(150, seed=2)


def test_no_generated_line_is_a_paraphrase_test_line() -> None:
    def norm(text: str) -> str:  # case, punctuation and spacing ignored; symbols-only lines kept whole
        return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split()) or text.strip().lower()

    test_lines = {norm(e.text) for e in load_examples(REPO_DATA / "paraphrase" / "test.csv")}
    oos_test = [
        e.text for e in load_examples(REPO_DATA / "paraphrase" / "test.csv") if e.intent == OUT_OF_SCOPE
    ]
    assert len(oos_test) >= 60
    generated = (
        generate_oos(3000, seed=7) + generate_oos(seed=13) + [e.text for e in load_oos("auto", {"x"}, 13)]
    )
    assert [t for t in generated if norm(t) in test_lines] == []
