"""Conversations from single exchanges: training examples with earlier turns.

Bitext, the bundled data, is single-turn, so a model trained on it alone never learns
to answer the *last* message when earlier turns sit in its prompt, and it copies a
reference number from any earlier turn ("where is my order 12345?" then "I want to
cancel my order" was answered about order 12345). :func:`with_earlier_turns` gives a
share of the training examples 1-3 earlier exchanges taken from the data itself:

- **unrelated** ones, of other intents (never the example itself, nor one with the same
  message or reply, so its own answer is never in its history): the model learns that
  the answer follows the last message, and that a number an earlier turn holds does
  not belong in a reply to a message that does not refer to it;
- **related** ones, where the data allows: an example whose message names an order,
  purchase, invoice or bill by number ("cancel purchase 3707955617") gets an earlier
  exchange of another intent about the *same* number, and its own message refers back
  ("cancel that purchase"). Its reply still names the number, so the model learns to
  carry a reference number across turns when the customer refers to it.

Examples stay unmasked here; :func:`core.prompt.mask_dialogue` numbers the references of
the whole conversation afterwards, as the generator does for a prompt.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import replace

from core.errors import ConfigError
from core.history import Turn
from core.prompt import Dialogue
from core.slots import REFERENCE_NUMBER

# "purchase 3707955617", "bill #12588", "order number 00123842": a reference a later
# message can point back to.
_NAMED = re.compile(
    r"(?:\b(?:my|the|this|your)\s+)?\b(?P<noun>order|purchase|invoice|bill)\s*(?:number\s*|no\.?\s*)?#?\s*"
    rf"(?P<number>{REFERENCE_NUMBER.pattern})",
    re.IGNORECASE,
)
_FAMILY = {"order": "order", "purchase": "order", "invoice": "invoice", "bill": "invoice"}


def with_earlier_turns(
    examples: Sequence[Dialogue],
    share: float,
    *,
    related: float = 0.5,
    max_turns: int = 3,
    seed: int = 13,
) -> list[Dialogue]:
    """``examples`` in order, ``share`` of them (0..1) with 1-``max_turns`` earlier
    exchanges drawn from ``examples``; of those whose message names a reference number,
    ``related`` get a related earlier exchange (module docstring) instead."""
    if not 0.0 <= share <= 1.0 or not 0.0 <= related <= 1.0:
        raise ConfigError("multi-turn shares must be between 0 and 1")
    if max_turns < 1:
        raise ConfigError("multi-turn examples need max_turns >= 1")
    rng = random.Random(seed)
    pool = list(examples)
    numbered = [(d, m) for d in pool for m in [_NAMED.search(d.text)] if m is not None]
    out: list[Dialogue] = []
    for example in examples:
        if rng.random() >= share:
            out.append(example)
            continue
        named = _NAMED.search(example.text)
        if named and rng.random() < related:
            linked = _related(example, named, numbered, rng)
            if linked is not None:
                out.append(linked)
                continue
        out.append(_unrelated(example, pool, rng.randint(1, max_turns), rng))
    return out


def _exchange(d: Dialogue) -> list[Turn]:
    return [
        Turn(role="user", text=d.text, timestamp=0.0, intent=d.intent),
        Turn(role="bot", text=d.reply, timestamp=0.0, intent=d.intent),
    ]


def _unrelated(example: Dialogue, pool: list[Dialogue], k: int, rng: random.Random) -> Dialogue:
    history: list[Turn] = list(example.history)
    tries = 0
    while len(history) < 2 * (len(example.history) // 2 + k) and tries < 50:
        tries += 1
        other = pool[rng.randrange(len(pool))]
        if _unrelated_to(example, other) and all(t.text != other.text for t in history):
            history += _exchange(other)
    return replace(example, history=tuple(history))


def _unrelated_to(example: Dialogue, other: Dialogue) -> bool:
    return (
        other.intent != example.intent
        and other.reply.strip() != example.reply.strip()
        and other.text.strip().lower() != example.text.strip().lower()
    )


def _related(
    example: Dialogue,
    named: re.Match[str],
    numbered: list[tuple[Dialogue, re.Match[str]]],
    rng: random.Random,
) -> Dialogue | None:
    """An earlier exchange of another intent about the same number, and the example's
    message pointing back to it; None when the data has no such exchange."""
    family = _FAMILY[named.group("noun").lower()]
    number = named.group("number")
    candidates = [
        (d, m)
        for d, m in numbered
        if _FAMILY[m.group("noun").lower()] == family and _unrelated_to(example, d)
    ]
    if not candidates:
        return None
    earlier, match = candidates[rng.randrange(len(candidates))]
    theirs = match.group("number")
    first = Dialogue(
        text=earlier.text.replace(theirs, number),
        reply=earlier.reply.replace(theirs, number),
        intent=earlier.intent,
    )
    pointing = f"that {named.group('noun').lower()}"
    text = example.text[: named.start()] + pointing + example.text[named.end() :]
    return replace(example, text=text, history=(*example.history, *_exchange(first)))
