"""What the engine needs from its two models; the implementations live in
``core.intents`` (BERT classifier) and ``core.generator`` (causal LM)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.history import Turn
from core.messages import ConversationKey
from core.persona import GenerationSettings

OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True, slots=True)
class IntentPrediction:
    label: str  # OUT_OF_SCOPE when the classifier does not know
    confidence: float  # probability of the top in-scope intent, 0..1
    top_label: str = ""  # the best in-scope intent even when label is OUT_OF_SCOPE


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One reply to write: the persona's style, the recent turns, the new message."""

    text: str
    intent: str = ""
    style: str = ""
    history: Sequence[Turn] = field(default_factory=tuple)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    # whose turn this is: lets a generator reuse the conversation's cached prompt prefix
    conversation: ConversationKey | None = None


class IntentModel(Protocol):
    labels: list[str]

    def predict(self, texts: Sequence[str]) -> list[IntentPrediction]:
        """Top intent and its probability for each text, as one batch."""
        ...


class ReplyModel(Protocol):
    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """One cleaned reply per request (raw ``{{slot}}`` placeholders allowed: the
        engine fills them from the persona's facts)."""
        ...
