"""Dialogue data for the LM: reading Bitext CSV and JSONL conversations, persona styles
for examples without one, replies cleaned of numbers nobody wrote, and batching
(length-grouped, right-padded, reply-only labels).

Examples are read unmasked (the customer's numbers as written), so earlier turns can be
added to them (``core.training.multi_turn``) and a generator gets the text a customer
would send; :func:`encode_dialogues` masks them (``core.prompt.mask_dialogue``) on the
way to token ids, as the generator masks a prompt.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError
from core.facts import AMOUNT, NUMBER, guard_reply
from core.prompt import IGNORE_INDEX, Dialogue, build_training_ids, dialogues_from_messages, mask_dialogue
from core.slots import REFERENCE_NUMBER
from core.training.data import load_examples

# Persona styles put in the system slot of examples that have none, composed at random
# so the model learns that the style text is context to read, not something to copy,
# and any persona's wording is familiar (see docs/lm-model.md).
TRAINING_STYLES = (
    "You are a friendly, concise customer-support assistant.",
    "You are a helpful support agent for an online store. "
    "Answer in plain language, in short steps when there is a procedure.",
    "",
)
_STYLE_NAMES = ("Ava", "Sam", "Mia", "Leo", "Nora", "Max", "Zoe", "Ben")
_STYLE_TONES = ("friendly", "concise", "helpful", "patient", "polite", "warm", "professional", "cheerful")
_STYLE_SHOPS = ("Example Store", "our online shop", "Acme", "the store", "ShopCo", "our company")
_STYLE_RULES = (
    "",
    "Answer in plain language, in short steps when there is a procedure.",
    "Keep answers short.",
    "Be kind and clear.",
    "Use simple words.",
    "Always offer further help.",
)


def training_style(rng: random.Random) -> str:
    """A persona style like those admins write ("You are Ava, a friendly ... for Acme.")."""
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(TRAINING_STYLES)
    name = f"{rng.choice(_STYLE_NAMES)}, " if rng.random() < 0.6 else ""
    tones = " and ".join(rng.sample(_STYLE_TONES, rng.choice((1, 2))))
    shop, rule = rng.choice(_STYLE_SHOPS), rng.choice(_STYLE_RULES)
    return f"You are {name}a {tones} customer-support assistant for {shop}. {rule}".strip()


def load_dialogues(path: Path | str, seed: int = 13) -> list[Dialogue]:
    """Examples of a CSV (Bitext: instruction, intent, response) or a JSONL file whose
    lines are conversations (``{"messages": [...], "intent"?, "system"?}``) or single
    exchanges (``instruction``/``text``, ``intent``/``label``, ``response``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}")
    out: list[Dialogue] = []
    if path.suffix.lower() in {".jsonl", ".json"}:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    out += _jsonl_row(line, f"{path}:{number}")
    else:
        out = [
            Dialogue(text=e.text, reply=e.response, intent=e.intent)
            for e in load_examples(path)
            if e.response
        ]
    if not out:
        raise ConfigError(f"{path}: no replies to learn (needs a response column or assistant messages)")
    rng = random.Random(seed)  # a persona style for examples without one
    styled = [
        d if d.system else Dialogue(d.text, d.reply, d.intent, training_style(rng), d.history) for d in out
    ]
    return [without_invented_numbers(d) for d in styled]


def without_invented_numbers(d: Dialogue) -> Dialogue:
    """``d`` with a reply that holds no number the customer did not write: a number that
    only extends the customer's by a digit or two becomes the customer's (Bitext answers
    "3707955617" with "370795561790" in 89 replies), any other is worded like the fact
    guard words it ("cancel your order number 370795561790" -> "cancel your order"), so
    the model never learns to invent one. Phone numbers, e-mail addresses and links are
    left to the persona's facts and the engine's guard."""
    said = [t.text for t in d.history if t.role == "user"] + [d.text]
    numbers = {m.group(0) for text in said for m in REFERENCE_NUMBER.finditer(text) if len(m.group(0)) >= 6}

    def customers(match: re.Match[str]) -> str:
        value = match.group(0)
        for known in numbers:
            if value != known and value.startswith(known) and len(value) - len(known) <= 2:
                return known
        return value

    reply = guard_reply(REFERENCE_NUMBER.sub(customers, d.reply), said, kinds=(NUMBER, AMOUNT)).text
    return d if reply == d.reply else Dialogue(d.text, reply, d.intent, d.system, d.history)


def _jsonl_row(line: str, where: str) -> list[Dialogue]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    intent, system = str(row.get("intent") or row.get("label") or ""), str(row.get("system") or "")
    if isinstance(row.get("messages"), list):
        try:
            return dialogues_from_messages(row["messages"], intent=intent, system=system)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    text, reply = str(row.get("instruction") or row.get("text") or ""), str(row.get("response") or "")
    if not text.strip() or not reply.strip():
        raise ConfigError(f'{where}: needs "messages", or "text"/"instruction" and "response"')
    return [Dialogue(text=text.strip(), reply=reply.strip(), intent=intent, system=system)]


def stratified_take(items: list[Dialogue], n: int, seed: int) -> list[Dialogue]:
    """``n`` examples spread over the intents (one of each in turn), reproducibly."""
    by_intent: dict[str, list[Dialogue]] = {}
    for d in items:
        by_intent.setdefault(d.intent, []).append(d)
    rng = random.Random(seed)
    pools = [rng.sample(group, len(group)) for _, group in sorted(by_intent.items())]
    out: list[Dialogue] = []
    while len(out) < n:
        out += [pool.pop() for pool in pools if pool][: n - len(out)]
    rng.shuffle(out)
    return out


def encode_dialogues(
    tokenizer: Any, dialogues: list[Dialogue], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels of each example, its reference numbers masked first."""
    return [build_training_ids(tokenizer, mask_dialogue(d), max_length) for d in dialogues]


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding): sort within chunks of 50
    batches, then shuffle the batch order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for s in range(0, len(order), chunk):
        part = sorted(order[s : s + chunk], key=lambda i: lengths[i])
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: padding has attention 0 and label -100."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    for row, (ids, lab) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
