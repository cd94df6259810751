"""What the engine needs from its two models; the implementations live in
``core.intents`` (BERT classifier) and ``core.generator`` (causal LM)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

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


class TokenStream(Protocol):
    """One reply as it is written (``core.batching.ReplyStream``)."""

    @property
    def done(self) -> bool: ...

    @property
    def version(self) -> int:
        """Bumped per token and once at the end."""
        ...

    async def changed(self, seen: int, at_least: int = 1, not_before: float = 0.0) -> int:
        """Wait until the stream is ``at_least`` versions past ``seen``, and the
        ``time.monotonic()`` instant ``not_before`` has passed, or the stream ended; the
        new version."""
        ...

    def text_so_far(self) -> str:
        """The reply so far, cleaned as the final one (the final reply once done)."""
        ...

    async def text(self) -> str:
        """The final reply; raises what stopped the generation, if anything did."""
        ...


@runtime_checkable
class StreamingReplyModel(ReplyModel, Protocol):
    """A reply model that takes requests one at a time into a running batch
    (``core.batching.ContinuousGenerator``): each reply joins at the next decoding step
    and can be read as it is written. Call ``submit`` on the event loop's thread."""

    def submit(self, request: GenerationRequest) -> TokenStream: ...
