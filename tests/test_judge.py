"""The reply judge: a response classifier with its own held-out accuracy, reply
scoring, and the multi-turn evaluation set builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError, ModelMissing
from core.evaluation.judge import (
    JUDGE_FILE,
    ResponseJudge,
    has_unfilled_slot,
    multi_turn_examples,
    score_replies,
    train_judge,
)
from core.prompt import Dialogue
from core.training.data import BITEXT_CSV, load_examples, stratified_split


@pytest.fixture(scope="module")
def bitext() -> list[Dialogue]:
    """A stratified fifth of the bundled data: every intent, quick to fit."""
    examples = stratified_split(load_examples(BITEXT_CSV), 0.2, seed=5)[1]
    return [Dialogue(text=e.text, reply=e.response, intent=e.intent) for e in examples]


@pytest.fixture(scope="module")
def judge(bitext: list[Dialogue]) -> ResponseJudge:
    return train_judge(bitext, held_out=0.2, seed=3)


def test_the_judge_names_the_intent_of_held_out_responses(
    judge: ResponseJudge, bitext: list[Dialogue]
) -> None:
    assert judge.n_held_out >= 150 and judge.n_train + judge.n_held_out == len(bitext)
    assert len(judge.labels) == 27
    assert judge.held_out_accuracy >= 0.85  # responses of one intent share a template


def test_the_judge_saves_and_loads(judge: ResponseJudge, tmp_path: Path) -> None:
    path = judge.save(tmp_path / "lm-default")
    assert path.name == JUDGE_FILE
    loaded = ResponseJudge.load(tmp_path / "lm-default")
    reply = "To cancel your order, go to Order History and click Cancel Order."
    assert loaded.predict([reply]) == judge.predict([reply])
    assert loaded.held_out_accuracy == judge.held_out_accuracy


def test_a_missing_or_foreign_judge_file_is_model_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="no reply judge"):
        ResponseJudge.load(tmp_path)
    (tmp_path / JUDGE_FILE).write_bytes(b"not a pickle")
    with pytest.raises(ModelMissing, match="does not load"):
        ResponseJudge.load(tmp_path)


def test_scores_count_on_intent_invented_numbers_and_unfilled_slots(
    judge: ResponseJudge, bitext: list[Dialogue]
) -> None:
    cancel = next(
        d.reply for d in bitext if d.intent == "cancel_order" and not any(c.isdigit() for c in d.reply)
    )
    pairs = [
        ("cancel_order", cancel),
        ("track_order", cancel),  # a cancellation answer to a tracking question
        ("cancel_order", "I understand you want to cancel order 370795561790."),
        ("cancel_order", "Look for the order with the number your reference number."),
    ]
    conversations = [["cancel my order"], ["where is it"], ["cancel order 12345"], ["cancel it"]]
    scores = score_replies(judge, pairs, conversations, {"Phone": "+1 555 0100"})
    assert [v.judged for v in scores.verdicts][:2] == ["cancel_order", "cancel_order"]
    assert [v.on_intent for v in scores.verdicts][:2] == [True, False]
    assert [v.invented for v in scores.verdicts] == [(), (), ("370795561790",), ()]
    assert [v.unfilled_slot for v in scores.verdicts] == [False, False, False, True]
    assert scores.n == 4
    assert scores.invented_number == 0.25 and scores.unfilled_slot == 0.25
    assert scores.on_intent == sum(v.on_intent for v in scores.verdicts) / 4
    with pytest.raises(ConfigError):
        score_replies(judge, pairs, conversations[:1])


def test_a_number_the_customer_or_the_persona_gave_is_not_invented(judge: ResponseJudge) -> None:
    pairs = [("track_order", "Order 12345 ships today; call {{Customer Support Phone Number}}.")]
    scores = score_replies(
        judge, pairs, [["where is order 12345"]], {"Customer Support Phone Number": "+1 555 0100"}
    )
    assert scores.verdicts[0].invented == ()


@pytest.mark.parametrize(
    ("reply", "awkward"),
    [
        ("Look for the order with the number your reference number.", True),
        ("Open {{Order History}} and pick it.", True),
        ("Visit the our website page.", True),
        ("Reach us through the the live chat on our website feature.", True),
        ("Please quote your order number when you call our support phone line.", False),
        ("Make sure that your order number is correct on our website.", False),
    ],
)
def test_unfilled_slot_phrasing(reply: str, awkward: bool) -> None:
    assert has_unfilled_slot(reply) is awkward


def test_multi_turn_history_never_holds_the_examples_own_answer(bitext: list[Dialogue]) -> None:
    held = bitext[:300]
    built = multi_turn_examples(held, seed=4)
    assert [(d.text, d.reply, d.intent) for d in built] == [(d.text, d.reply, d.intent) for d in held]
    lengths = set()
    for example in built:
        bot_turns = [t.text for t in example.history if t.role == "bot"]
        user_turns = [t.text for t in example.history if t.role == "user"]
        lengths.add(len(bot_turns))
        assert example.reply not in bot_turns
        assert all(example.reply.strip() not in t for t in bot_turns)
        assert example.text.lower() not in (t.lower() for t in user_turns)
        assert all(t.intent != example.intent for t in example.history)
        assert [t.role for t in example.history] == ["user", "bot"] * len(bot_turns)
    assert lengths == {1, 2, 3}


def test_multi_turn_needs_a_sane_range(bitext: list[Dialogue]) -> None:
    with pytest.raises(ConfigError):
        multi_turn_examples(bitext[:5], min_turns=2, max_turns=1)
