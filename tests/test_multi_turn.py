"""Multi-turn training data: earlier turns from other exchanges, never the example's own
answer; related turns carry the customer's number; replies hold no invented number; and
the earlier turns really reach the prompt."""

from __future__ import annotations

import re

import pytest

from core.errors import ConfigError
from core.history import Turn
from core.persona import GenerationSettings
from core.prompt import USER, Dialogue, build_prompt_ids, build_training_ids, mask_dialogue, special_ids
from core.protocols import GenerationRequest
from core.training.data import BITEXT_CSV
from core.training.dialogues import load_dialogues, without_invented_numbers
from core.training.lm_model import train_tokenizer
from core.training.multi_turn import with_earlier_turns


@pytest.fixture(scope="module")
def bitext() -> list[Dialogue]:
    return load_dialogues(BITEXT_CSV)


def test_the_builder_never_puts_an_examples_own_answer_into_its_history(bitext: list[Dialogue]) -> None:
    built = with_earlier_turns(bitext, 0.6, seed=3)
    assert len(built) == len(bitext)
    with_history = [(d, b) for d, b in zip(bitext, built, strict=True) if b.history]
    assert 0.5 * len(bitext) < len(with_history) < 0.7 * len(bitext)
    depths = set()
    for original, example in with_history:
        assert (example.reply, example.intent, example.system) == (
            original.reply,
            original.intent,
            original.system,
        )
        bot = [t.text for t in example.history if t.role == "bot"]
        user = [t.text for t in example.history if t.role == "user"]
        depths.add(len(bot))
        assert [t.role for t in example.history] == ["user", "bot"] * len(bot)
        assert all(example.reply.strip() != t.strip() for t in bot)  # its own answer is never there
        assert all(original.text.strip().lower() != t.strip().lower() for t in user)
        assert all(t.intent != example.intent for t in example.history)
        assert len(set(user)) == len(user)  # no exchange twice
    assert depths == {1, 2, 3}
    assert [d.text for d, b in zip(bitext, built, strict=True) if not b.history] == [
        b.text for b in built if not b.history
    ]


def test_related_turns_carry_the_customers_number_and_the_message_points_back(
    bitext: list[Dialogue],
) -> None:
    built = with_earlier_turns(bitext, 1.0, related=1.0, seed=5)
    related = [
        d for d in built if re.search(r"\bthat (?:order|purchase|invoice|bill)\b", d.text) and d.history
    ]
    assert len(related) > 300
    for example in related:
        masked = mask_dialogue(example)
        assert "{{Reference 1}}" in masked.history[0].text  # the earlier turn names the number
        assert not re.search(r"\d{4}", masked.text)  # the new message only refers to it
        assert masked.history[0].intent != example.intent
    carried = [mask_dialogue(d) for d in related]
    assert sum("{{Reference 1}}" in d.reply for d in carried) > 0.8 * len(carried)


def test_bad_shares_are_config_errors(bitext: list[Dialogue]) -> None:
    with pytest.raises(ConfigError):
        with_earlier_turns(bitext[:5], 1.5)
    with pytest.raises(ConfigError):
        with_earlier_turns(bitext[:5], 0.5, max_turns=0)


def test_training_replies_hold_no_number_the_customer_did_not_write() -> None:
    quirk = Dialogue("cancel purchase 3707955617", "I will cancel purchase 370795561790 now.", "cancel_order")
    assert without_invented_numbers(quirk).reply == "I will cancel purchase 3707955617 now."
    invented = Dialogue("cancel my order", "I will cancel your order number 55512345 now.", "cancel_order")
    assert without_invented_numbers(invented).reply == "I will cancel your order now."
    earlier = Dialogue(
        "cancel it", "Order 4711-22 is cancelled.", "cancel_order", history=(Turn("user", "order 4711-22"),)
    )
    assert without_invented_numbers(earlier) is earlier


def test_earlier_turns_fit_the_prompt_beside_the_replys_room(bitext: list[Dialogue]) -> None:
    """With the default persona's 160 new tokens in the default 384-token window, three
    Bitext exchanges (bot turns by their first sentence) reach the prompt."""
    tok = train_tokenizer([t for d in bitext[:800] for t in (d.text, d.reply, d.system, d.intent)], 2000)
    user = special_ids(tok)[USER]
    built = [d for d in with_earlier_turns(bitext[:400], 1.0, related=0.0, seed=2) if len(d.history) == 6]
    assert len(built) > 50
    settings = GenerationSettings(max_new_tokens=160, history_turns=6)
    kept = [
        build_prompt_ids(
            tok, GenerationRequest(d.text, d.intent, d.system, d.history, settings), 384, 160
        ).count(user)
        - 1
        for d in built
    ]
    assert sum(kept) / len(kept) > 2.8
    ids, labels = build_training_ids(tok, mask_dialogue(built[0]), 384)
    assert ids.count(user) == 4 and len(ids) <= 384 and labels[-1] != -100
