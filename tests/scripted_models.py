"""Deterministic stand-ins for the two models, for engine logic tests only.

They implement the same protocols as the real models (core.protocols) so routing,
ordering and persistence can be checked with known confidences; the real models are
exercised end to end in tests/test_end_to_end.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from core.bus import Bus
from core.conversation import Conversations
from core.engine import Engine, EngineConfig, ModelProvider
from core.history import History
from core.keys import Keys
from core.persona import PersonaStore
from core.protocols import OUT_OF_SCOPE, GenerationRequest, IntentPrediction
from core.tickets import TicketConfig, Tickets


@dataclass
class ScriptedIntents:
    """``intent:conf`` words in the text set the prediction, e.g. ``[complaint:0.9]``."""

    labels: list[str] = field(default_factory=lambda: ["track_order", "complaint", "contact_human_agent"])

    def predict(self, texts: Sequence[str]) -> list[IntentPrediction]:
        out = []
        for text in texts:
            label, conf = "track_order", 0.9
            if "[" in text and "]" in text:
                spec = text[text.index("[") + 1 : text.index("]")]
                label, _, raw = spec.partition(":")
                conf = float(raw or 0.9)
            if label == "oos":
                out.append(IntentPrediction(OUT_OF_SCOPE, conf, "track_order"))
            else:
                out.append(IntentPrediction(label, conf, label))
        return out


@dataclass
class ScriptedReplies:
    """Replies ``answer to <text> (history N)``, or ``script[text]`` when the message is
    scripted, and records every batch it was given."""

    batches: list[list[GenerationRequest]] = field(default_factory=list)
    script: dict[str, str] = field(default_factory=dict)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.batches.append(list(requests))
        return [
            self.script.get(
                r.text,
                f"answer to {r.text} (history {len(r.history)}) call {{{{Customer Support Phone Number}}}}",
            )
            for r in requests
        ]


class GatedReplies(ScriptedReplies):
    """Scripted replies that wait for the test's ``release()`` (one per generation call),
    so a test can act while a reply is being written (the models run in a worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Semaphore(0)

    def release(self, calls: int = 1) -> None:
        self.gate.release(calls)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        if not self.gate.acquire(timeout=60):
            raise TimeoutError("the test never released the reply model")
        return super().generate(requests)


@dataclass
class ScriptedProvider:
    intents: ScriptedIntents = field(default_factory=ScriptedIntents)
    replies: ScriptedReplies = field(default_factory=ScriptedReplies)

    def intent_model(self, name: str) -> ScriptedIntents:
        return self.intents

    def reply_model(self, name: str) -> ScriptedReplies:
        return self.replies


def build_engine(
    redis: Redis,
    keys: Keys,
    models: ModelProvider | None = None,
    *,
    history: History | None = None,
    config: EngineConfig = EngineConfig(block_ms=50),
    tickets: TicketConfig = TicketConfig(),
    clock: Callable[[], float] = time.time,
) -> Engine:
    """An engine on the test's Redis namespace, wired as ``bots.runtime.Runtime`` wires it
    (scripted models unless ``models`` is given)."""
    history = history or History(redis, keys, max_turns=50, ttl_seconds=3600)
    conversations = Conversations(redis, keys, history)
    bus = Bus(redis, keys)
    return Engine(
        redis,
        models or ScriptedProvider(),
        bus=bus,
        personas=PersonaStore(redis, keys),
        conversations=conversations,
        tickets=Tickets(redis, keys, bus=bus, conversations=conversations, config=tickets, clock=clock),
        config=config,
    )
