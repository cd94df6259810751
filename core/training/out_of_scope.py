"""Out-of-scope text for the intent classifier: sentences no support bot should answer.

``generate_oos`` fills templates (small talk, trivia, weather, cooking, sports, math,
assistant requests) deterministically; ``load_oos`` turns an ``--oos-examples`` value
("auto" or a file) into ``out_of_scope`` examples. For a BANKING77-labelled model "auto"
adds Bitext utterances from intents a bank would not serve.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from core.errors import ConfigError
from core.protocols import OUT_OF_SCOPE
from core.training.data import BITEXT_CSV, REPO_DATA, Example, load_examples

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

_OOS_TEMPLATES = {
    # (greetings are not here: they are the small-talk intents, core/training/small_talk.py)
    "small talk": [
        "how is your {day} going?",
        "do you {like} {thing}?",
        "tell me a joke about {thing}",
        "what is your favourite {thing}?",
        "i'm feeling {mood} today",
        "are you a robot or a {thing}?",
    ],
    "trivia": [
        "who wrote {book}?",
        "what is the capital of {country}?",
        "how tall is {landmark}?",
        "when was {landmark} built?",
        "what language do they speak in {country}?",
    ],
    "weather": [
        "will it rain in {city} {when}?",
        "what's the weather like in {city}?",
        "how cold will it be {when} in {city}?",
        "is it sunny in {city} right now",
    ],
    "cooking": [
        "how long should i boil {food}?",
        "give me a recipe for {food}",
        "can i freeze {food}?",
        "what wine goes with {food}?",
        "how do i make {food} crispy",
    ],
    "sports": [
        "who won the {sport} game {when}?",
        "when does the {sport} season start?",
        "how many players are on a {sport} team?",
        "what are the rules of {sport}?",
    ],
    "math": [
        "what is {n} times {m}?",
        "what's the square root of {n}",
        "is {n} a prime number?",
        "convert {n} miles to kilometers",
        "how much is {n} plus {m}",
    ],
    "misc": [
        "set an alarm for {n} am",
        "play some {genre} music",
        "translate '{thing}' into {lang}",
        "how do you say {thing} in {lang}",
        "recommend a {genre} movie",
        "what time is it in {city}",
    ],
}
_OOS_FILL = {
    "day": ["day", "week", "weekend", "morning"],
    "like": ["like", "enjoy", "hate"],
    "thing": ["cats", "pizza", "the ocean", "chess", "jazz", "mountains", "robots"],
    "mood": ["great", "bored", "tired", "happy"],
    "part": ["morning", "evening", "afternoon"],
    "book": ["hamlet", "war and peace", "the odyssey", "pride and prejudice"],
    "country": ["peru", "japan", "norway", "kenya", "canada"],
    "landmark": ["the eiffel tower", "mount everest", "big ben"],
    "city": ["paris", "tokyo", "chicago", "lagos", "sydney"],
    "when": ["tomorrow", "tonight", "this weekend", "yesterday"],
    "food": ["eggs", "pasta", "rice", "salmon", "potatoes", "broccoli"],
    "sport": ["football", "basketball", "cricket", "tennis", "hockey"],
    "n": ["7", "12", "49", "144", "1000"],
    "m": ["3", "8", "15"],
    "genre": ["jazz", "rock", "comedy", "horror", "classical"],
    "lang": ["french", "spanish", "german"],
}


def generate_oos(n: int = 400, seed: int = 13) -> list[str]:
    """Deterministic, varied sentences no customer-support bot should answer."""
    rng = random.Random(seed)
    templates = [t for group in _OOS_TEMPLATES.values() for t in group]
    out: set[str] = set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        tpl = rng.choice(templates)
        keys = [k for k in _OOS_FILL if "{" + k + "}" in tpl]
        out.add(tpl.format(**{k: rng.choice(_OOS_FILL[k]) for k in keys}))
    return sorted(out)


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
