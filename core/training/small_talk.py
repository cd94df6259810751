"""Greetings, thanks and goodbyes: the first and last things customers type.

Support data sets (Bitext, BANKING77) have none of them, so a classifier trained only
on those calls "hi" out-of-scope and the bot asks a greeting customer to rephrase.
These generated examples add three small-talk intents; the default persona answers
them with canned lines (see ``RoutingRules``).
"""

from __future__ import annotations

import random

from core.training.data import Example

SMALL_TALK_INTENTS = ("greeting", "thanks", "goodbye")

_PHRASES: dict[str, tuple[str, ...]] = {
    "greeting": (
        "hi",
        "hello",
        "hey",
        "hiya",
        "hi there",
        "hello there",
        "hey there",
        "good morning",
        "good afternoon",
        "good evening",
        "morning",
        "greetings",
        "howdy",
        "yo",
        "heya",
        "anyone there",
        "is anyone there",
        "hi anyone here",
        "hello is this support",
        "hey bot",
        "hello bot",
        "hi support",
        "hola",
        "bonjour",
        "hallo",
        "ciao",
        "hi, how are you",
        "hello, how are you doing",
        "hey, what's up",
        "hi hi",
        "helo",
        "hii",
        "hey you",
    ),
    "thanks": (
        "thanks",
        "thank you",
        "thx",
        "ty",
        "thanks a lot",
        "thank you so much",
        "many thanks",
        "cheers",
        "great, thanks",
        "ok thanks",
        "perfect, thank you",
        "that helps, thanks",
        "awesome thanks",
        "thanks for your help",
        "thank you for the help",
        "appreciate it",
        "much appreciated",
        "merci",
        "gracias",
        "danke",
        "thanks a bunch",
        "super, thank you",
        "cool thanks",
        "brilliant, thanks",
        "thank u",
        "tysm",
    ),
    "goodbye": (
        "bye",
        "goodbye",
        "bye bye",
        "see you",
        "see ya",
        "have a nice day",
        "that's all",
        "that is all, bye",
        "nothing else, bye",
        "ok bye",
        "cya",
        "talk later",
        "good night",
        "i'm done",
        "no that's it",
        "adios",
        "ciao for now",
        "farewell",
        "later",
        "bye for now",
        "that's everything, goodbye",
        "see you later",
        "catch you later",
        "have a good one",
    ),
}
_PREFIXES = ("", "", "", "ok ", "oh ", "well ")
_SUFFIXES = ("", "", "!", ".", "!!", " :)", " 🙂", "?")


_OPENERS = (
    "hi, ",
    "hello! ",
    "hey there, ",
    "good morning, ",
    "hi there. ",
    "hello, ",
    "hey ",
    "thanks, ",
    "thank you. ",
    "hi! ",
)


def with_openers(examples: list[Example], share: float = 0.15, seed: int = 13) -> list[Example]:
    """Copies of a ``share`` of ``examples`` opened with a greeting or thanks
    ("hi, where is my order?") that keep their intent: the request decides, the
    pleasantry does not."""
    rng = random.Random(seed)
    picked = rng.sample(examples, round(len(examples) * share))
    return [Example(text=rng.choice(_OPENERS) + e.text, intent=e.intent) for e in picked]


def generate_small_talk(per_intent: int = 120, seed: int = 13) -> list[Example]:
    """Varied, deterministic examples of each small-talk intent (case, punctuation,
    fillers), at most ``per_intent`` each."""
    rng = random.Random(seed)
    examples: list[Example] = []
    for intent, phrases in _PHRASES.items():
        seen: set[str] = set()
        for _ in range(per_intent * 20):
            if len(seen) >= per_intent:
                break
            text = rng.choice(_PREFIXES) + rng.choice(phrases) + rng.choice(_SUFFIXES)
            if intent == "greeting" and text.startswith(("ok ", "well ")):
                continue  # "ok hi" is not how people say hello
            seen.add(text.capitalize() if rng.random() < 0.5 else text)
        examples += [Example(text=t, intent=intent) for t in sorted(seen)]
    return examples
