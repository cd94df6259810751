"""Paraphrase-style rewrites of training messages, so the classifier learns the request
and not one data set's phrasing.

Two sources, both deterministic for a seed:

- :func:`rewrite` turns a message into the way people type it: synonym swaps from a
  small support vocabulary, politeness and chat wrappers, a rambling sentence of
  context around the request, typos, dropped words, lower case without punctuation.
  :func:`augment` applies it to training examples (never to validation ones).
- :func:`casual_examples` fills the hand-written templates of
  ``core/training/casual_templates.py`` (casual requests for every default intent)
  and rewrites some of them.

Nothing here is copied from an evaluation set; ``tests/test_augment.py`` checks that no
generated line is a line of the hand-written paraphrase test set.
"""

from __future__ import annotations

import random
import re

from core.training.casual_templates import FILLS, templates
from core.training.data import Example

# Whole words or phrases and what people write instead (lower case).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "order": ("purchase", "package", "parcel", "stuff i ordered"),
    "purchase": ("order", "package"),
    "cancel": ("call off", "stop", "scrap"),
    "refund": ("money back", "reimbursement", "refund payment"),
    "reimbursement": ("refund", "money back"),
    "invoice": ("bill", "receipt"),
    "invoices": ("bills", "receipts"),
    "bill": ("invoice", "statement"),
    "account": ("profile", "acct", "login"),
    "password": ("pw", "passcode", "login password"),
    "customer service": ("support", "customer care", "the help desk"),
    "customer support": ("customer service", "the support team", "helpdesk"),
    "human agent": ("real person", "actual human", "representative", "live person"),
    "agent": ("person", "representative", "operator"),
    "shipping": ("delivery", "postage"),
    "delivery": ("shipping", "shipment"),
    "address": ("addr", "home address"),
    "newsletter": ("mailing list", "email updates"),
    "payment": ("transaction", "charge"),
    "product": ("item", "thing"),
    "item": ("product", "thing"),
    "items": ("products", "things", "stuff"),
    "sign up": ("register", "join"),
    "register": ("sign up", "enrol"),
    "create": ("make", "open", "set up"),
    "delete": ("remove", "close", "get rid of"),
    "check": ("see", "look at", "find out"),
    "track": ("find", "locate", "check on"),
    "help me": ("can you help me", "i need you to"),
    "i want to": ("i wanna", "i'd like to", "i need to"),
    "i need to": ("i have to", "i gotta", "i must"),
    "want": ("wanna", "would like"),
    "please": ("pls", "plz", "kindly"),
    "you": ("u", "ya"),
    "your": ("ur", "yr"),
    "are": ("r",),
    "thanks": ("thx", "ty"),
}
_SYNONYM_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b")

_WRAPS = (
    "could you please {}",
    "can you {}",
    "hi, {}",
    "hello, {}",
    "hey {}",
    "um {}",
    "ok so {}",
    "quick question, {}",
    "sorry to bother you but {}",
    "excuse me, {}",
    "{} please",
    "{} thanks",
    "{}, thank you",
    "{} asap",
    "{} plz",
    "{}??",
    "{}!!",
    "{} ...",
    "i was wondering, {}",
    "is there a way to {}",
)
_CONTEXT_BEFORE = (
    "i've been shopping with you for years and never had to ask this, but ",
    "sorry for the long message, it's been a crazy week. ",
    "my friend said i should ask here. ",
    "i tried the website and the app and got nowhere, so ",
    "hope you're having a good day. ",
    "writing from my phone so excuse the typos. ",
    "this is the second time i'm asking. ",
    "long story short, ",
    "i'm not great with computers. ",
    "ok so here's the thing: ",
    "i was at work all day and only saw this now. ",
)
_CONTEXT_AFTER = (
    ". i need this sorted today",
    ". thanks in advance",
    ", it's kind of urgent",
    ". i'm travelling next week",
    ". let me know",
    ". any help appreciated",
    ". cheers",
    ". i'm on mobile",
    ", sorry if this is the wrong place to ask",
)
_KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"


def _typo(word: str, rng: random.Random) -> str:
    """One keyboard slip: a dropped, doubled, swapped or neighbouring letter."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    row = next((r for r in _KEYBOARD.split() if word[i].lower() in r), "")
    if not row:
        return word
    j = row.index(word[i].lower())
    near = row[max(0, j - 1) : j] + row[j + 1 : j + 2]
    return word[:i] + rng.choice(near) + word[i + 1 :]


def _swap_synonyms(text: str, rng: random.Random, p: float = 0.6) -> str:
    return _SYNONYM_RE.sub(
        lambda m: rng.choice(SYNONYMS[m.group(1)]) if rng.random() < p else m.group(1), text
    )


def rewrite(text: str, rng: random.Random) -> str:
    """One rewrite of ``text`` as a customer might type it (several random changes)."""
    out = text.lower() if rng.random() < 0.7 else text
    if rng.random() < 0.6:
        out = _swap_synonyms(out.lower(), rng)
    words = out.split()
    if len(words) > 4 and rng.random() < 0.2:  # dropped words
        words = [w for w in words if rng.random() > 0.12] or words
    if rng.random() < 0.35:
        words = [_typo(w, rng) if rng.random() < 0.15 else w for w in words]
    out = " ".join(words)
    if rng.random() < 0.4:
        out = re.sub(r"[?.!,;:]+", "", out).strip()
    roll = rng.random()
    if roll < 0.3:
        out = rng.choice(_WRAPS).format(out)
    elif roll < 0.45:
        out = rng.choice(_CONTEXT_BEFORE) + out
    elif roll < 0.55:
        out = out.rstrip("?.! ") + rng.choice(_CONTEXT_AFTER)
    if rng.random() < 0.05:
        out = out.upper()
    return out.strip() or text


def augment(examples: list[Example], copies: float = 1.0, seed: int = 13) -> list[Example]:
    """``copies`` rewrites per example on average (1.5 = one each, plus a second for
    half of them), each keeping its intent; rewrites equal to their source are dropped."""
    rng = random.Random(seed)
    out: list[Example] = []
    for e in examples:
        n = int(copies) + (rng.random() < copies - int(copies))
        for _ in range(n):
            text = rewrite(e.text, rng)
            if text.lower() != e.text.lower():
                out.append(Example(text=text, intent=e.intent))
    return out


def _number(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(5, 11)))
    return rng.choice(("", "#", "no. ")) + digits


def fill(template: str, rng: random.Random) -> str:
    """A template with each ``{slot}`` filled (``{num}`` with a random order number)."""
    return re.sub(
        r"\{(\w+)\}",
        lambda m: _number(rng) if m.group(1) == "num" else rng.choice(FILLS[m.group(1)]),
        template,
    )


def casual_examples(intents: set[str], per_intent: int = 60, seed: int = 13) -> list[Example]:
    """Up to ``per_intent`` distinct filled templates for each of ``intents`` that has
    templates; half of them rewritten (typos, wrappers, synonyms)."""
    rng = random.Random(seed)
    out: list[Example] = []
    for intent, lines in sorted(templates().items()):
        if intent not in intents:
            continue
        seen: set[str] = set()
        for _ in range(per_intent * 10):
            if len(seen) >= per_intent:
                break
            text = fill(rng.choice(lines), rng)
            seen.add(rewrite(text, rng) if rng.random() < 0.5 else text)
        out += [Example(text=t, intent=intent) for t in sorted(seen)]
    return out
