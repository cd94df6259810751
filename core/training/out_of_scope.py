"""Out-of-scope text for the intent classifier: messages no support bot should answer.

``generate_oos`` mixes three generated kinds, deterministically: templated topics
(other businesses' questions, trivia, weather, cooking, arithmetic, assistant requests;
``core/training/oos_templates.py``), gibberish and keyboard mashing, and support
questions in other languages. ``load_oos`` turns an ``--oos-examples`` value ("auto"
or a file) into ``out_of_scope`` examples. For a BANKING77-labelled model "auto" adds
Bitext utterances from intents a bank would not serve.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from core.errors import ConfigError
from core.protocols import OUT_OF_SCOPE
from core.training.data import BITEXT_CSV, REPO_DATA, Example, load_examples
from core.training.oos_templates import FILL, FOREIGN, TEMPLATES

# Bitext intents that a banking bot would also serve: never used as banking OOS text.
BITEXT_BANKING_OVERLAP = {
    "check_payment_methods",
    "payment_issue",
    "get_refund",
    "track_refund",
    "check_refund_policy",
    "recover_password",
    "create_account",
    "delete_account",
    "edit_account",
    "switch_account",
    "registration_problems",
    "complaint",
    "contact_customer_service",
    "contact_human_agent",
    "check_cancellation_fee",
}

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890")
_SYLLABLES = ("bla", "ro", "fn", "zu", "ki", "mop", "tr", "ex", "glo", "vu", "pa", "shn", "ix", "do")
_SYMBOLS = ("?", "!", ".", "...", "?!", "-", "*", "😂", "👍", "🙄", "🤔", ":(", ":)", "#", "$%")
_FILLERS = ("test", "testing", "test 123", "lorem ipsum dolor sit amet", "hmm", "asdf test", "xyz")


def _gibberish(rng: random.Random) -> str:
    """One message of keyboard mashing, random letters, repeats, symbols or made-up words."""
    kind = rng.randrange(6)
    if kind == 0:  # a walk along a keyboard row, maybe repeated or split
        row = rng.choice(_KEYBOARD_ROWS[:3])
        i = rng.randrange(len(row) - 3)
        walk = row[i : i + rng.randrange(3, min(8, len(row) - i) + 1)]  # 3-8 keys
        return rng.choice((walk, walk * 2, walk + " " + walk[::-1], walk.upper(), walk + "!!"))
    if kind == 1:  # random letters
        letters = "abcdefghijklmnopqrstuvwxyz"
        words = [
            "".join(rng.choice(letters) for _ in range(rng.randrange(2, 11)))
            for _ in range(rng.randrange(1, 4))
        ]
        return " ".join(words)
    if kind == 2:  # a key held down, sliding onto its neighbour
        row = rng.choice(_KEYBOARD_ROWS[:3])
        i = rng.randrange(len(row) - 1)
        return row[i] * rng.randrange(3, 12) + row[i + 1] * rng.randrange(1, 5)
    if kind == 3:  # symbols and emoji, at least two different ones
        picked = rng.sample(_SYMBOLS, rng.randrange(2, 5))
        return "".join(picked)
    if kind == 4:  # words that are no words
        return " ".join(
            "".join(rng.choice(_SYLLABLES) for _ in range(rng.randrange(1, 4)))
            for _ in range(rng.randrange(1, 5))
        )
    return rng.choice(_FILLERS) + rng.choice(("", "?", "!", " " + rng.choice(_KEYBOARD_ROWS[1][:5])))


def generate_gibberish(n: int = 150, seed: int = 13) -> list[str]:
    """``n`` distinct messages nobody could answer: mashing, noise, symbols (deterministic)."""
    rng = random.Random(seed)
    out: set[str] = set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        out.add(_gibberish(rng))
    return sorted(out)


def foreign_messages(seed: int = 13) -> list[str]:
    """The other-language messages of ``FOREIGN``, each as written, in lower case without
    its final punctuation, and capitalised (deterministic)."""
    out: set[str] = set()
    for lines in FOREIGN.values():
        for line in lines:
            out |= {line, line.lower().rstrip("?？.!"), line[:1].upper() + line[1:]}
    return sorted(out)


def generate_topics(n: int = 400, seed: int = 13) -> list[str]:
    """Deterministic, varied sentences no customer-support bot should answer."""
    rng = random.Random(seed)
    templates = [t for group in TEMPLATES.values() for t in group]
    out: set[str] = set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        tpl = rng.choice(templates)
        keys = [k for k in FILL if "{" + k + "}" in tpl]
        out.add(tpl.format(**{k: rng.choice(FILL[k]) for k in keys}))
    return sorted(out)


def generate_oos(n: int = 400, seed: int = 13) -> list[str]:
    """The "auto" out-of-scope text: ``n`` templated topics (other businesses, trivia,
    chat, ...) plus, when ``n`` is at least 100, ``n // 3`` gibberish messages and the
    other-language ones. Deterministic for a seed."""
    if n < 100:
        return generate_topics(n, seed)
    return sorted(set(generate_topics(n, seed) + generate_gibberish(n // 3, seed) + foreign_messages(seed)))


def load_oos(spec: str, in_scope: set[str], seed: int) -> list[Example]:
    """ "auto" -> generated sentences (+ non-banking Bitext text when the in-scope labels
    are BANKING77's); a path -> its texts (CSV/JSONL via load_examples, or one per line)."""
    if spec == "auto":
        texts = generate_oos(seed=seed)
        banking = REPO_DATA / "banking77" / "categories.json"
        if banking.is_file() and in_scope <= set(json.loads(banking.read_text())):
            rows = [e for e in load_examples(BITEXT_CSV) if e.intent not in BITEXT_BANKING_OVERLAP]
            random.Random(seed).shuffle(rows)
            texts += [e.text for e in rows[:800]]
    else:
        path = Path(spec)
        if path.suffix.lower() in {".csv", ".jsonl", ".json"}:
            texts = [e.text for e in load_examples(path)]
        elif path.is_file():
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            raise ConfigError(f"--oos-examples: file not found: {path} (or use 'auto')")
    if not texts:
        raise ConfigError(f"--oos-examples {spec}: no examples")
    return [Example(text=t, intent=OUT_OF_SCOPE) for t in texts]
