"""A persona preview: one test message through the classifier, the router and the
generator the engine uses, with a draft persona, without touching any conversation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from core.engine import ModelProvider
from core.messages import Route
from core.persona import Persona
from core.protocols import GenerationRequest
from core.router import decide
from core.slots import fill_slots
from core.text import clean_incoming


@dataclass(frozen=True, slots=True)
class Preview:
    intent: str
    confidence: float
    route: str
    reason: str
    reply: str

    def to_dict(self) -> dict[str, object]:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "route": self.route,
            "reason": self.reason,
            "reply": self.reply,
        }


async def preview(models: ModelProvider, persona: Persona, text: str, max_chars: int = 4000) -> Preview:
    """What ``persona`` would answer to ``text`` as the first message of a conversation.
    Model calls run in a worker thread; a missing model raises ModelMissing."""
    clean = clean_incoming(text, max_chars).text
    says = persona.messages
    if not clean:
        return Preview("", 0.0, Route.PROMPT.value, "empty message", says.empty)
    intents = models.intent_model(persona.models.intent)
    prediction = (await asyncio.to_thread(intents.predict, [clean]))[0]
    decision = decide(prediction, persona.routing, 0)
    reply = {
        Route.ESCALATE: says.handoff,
        Route.REPHRASE: says.rephrase,
        Route.CANNED: persona.routing.canned.get(prediction.label, ""),
    }.get(decision.route, "")
    if decision.route is Route.GENERATE:
        request = GenerationRequest(
            text=clean, intent=prediction.label, style=persona.style, settings=persona.generation
        )
        lm = models.reply_model(persona.models.lm)
        reply = (await asyncio.to_thread(lm.generate, [request]))[0].strip() or says.rephrase
    return Preview(
        prediction.label,
        prediction.confidence,
        decision.route.value,
        decision.reason,
        fill_slots(reply, persona.facts),
    )
