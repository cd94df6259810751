"""Loading the bundled dialogue/intent data and splitting it reproducibly.

The Bitext customer-support CSV has one row per exchange: ``instruction`` (what the
customer wrote), ``intent``, ``category`` and ``response`` (the agent's answer, with
``{{slot}}`` placeholders that a bot fills from its persona's facts).
"""

from __future__ import annotations

import csv
import json
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from core.errors import ConfigError

INSTALLED_DATA = Path(sys.prefix) / "share" / "chatbot-framework" / "data"


def _data_root() -> Path:
    """The bundled data: ``data/`` of a source checkout (or editable install), else the
    copy a regular install puts under ``<prefix>/share/chatbot-framework/data``."""
    checkout = Path(__file__).resolve().parents[2] / "data"
    return checkout if (checkout / "bitext").is_dir() else INSTALLED_DATA


REPO_DATA = _data_root()
BITEXT_CSV = REPO_DATA / "bitext" / "train.csv"


@dataclass(frozen=True, slots=True)
class Example:
    text: str  # the customer's message
    intent: str
    response: str = ""  # the agent's reply, when the data has one
    category: str = ""


def load_examples(path: Path | str) -> list[Example]:
    """Read CSV (Bitext columns, or ``text,label``) or JSONL (``text``/``instruction``,
    ``label``/``intent``, optional ``response``). Errors name the file and row."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}")
    rows: list[dict[str, str]]
    if path.suffix.lower() in {".jsonl", ".json"}:
        rows = []
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    else:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    examples = []
    for number, row in enumerate(rows, 2 if path.suffix.lower() == ".csv" else 1):
        text = row.get("instruction") or row.get("text") or ""
        intent = row.get("intent") or row.get("label") or row.get("category") or ""
        if not text.strip() or not intent.strip():
            raise ConfigError(f"{path}:{number}: row needs a text and a label/intent")
        examples.append(
            Example(
                text=text.strip(),
                intent=intent.strip(),
                response=(row.get("response") or "").strip(),
                category=(row.get("category") or "").strip() if "intent" in row else "",
            )
        )
    if not examples:
        raise ConfigError(f"{path}: no examples")
    return examples


class Labelled(Protocol):
    @property
    def intent(self) -> str: ...


L = TypeVar("L", bound=Labelled)


def stratified_split(examples: Sequence[L], fraction: float, seed: int = 13) -> tuple[list[L], list[L]]:
    """Split into (train, held_out) keeping each intent's share; same seed, same split.
    Works for any labelled item (an :class:`Example`, a ``Dialogue``)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("split fraction must be between 0 and 1")
    by_intent: dict[str, list[L]] = defaultdict(list)
    for ex in examples:
        by_intent[ex.intent].append(ex)
    rng = random.Random(seed)
    train: list[L] = []
    held: list[L] = []
    for intent in sorted(by_intent):
        group = by_intent[intent][:]
        rng.shuffle(group)
        n_held = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        held.extend(group[:n_held])
        train.extend(group[n_held:])
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held
