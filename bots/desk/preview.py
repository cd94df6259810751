"""A persona preview: one test message through the classifier, the router and the
generator the engine uses, with a draft persona, without touching any conversation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from core import router
from core.conversation import ConversationState
from core.engine import ModelProvider
from core.finishing import finish_reply
from core.persona import Persona
from core.protocols import GenerationRequest
from core.text import clean_incoming


@dataclass(frozen=True, slots=True)
class Preview:
    intent: str
    confidence: float
    route: str
    reason: str
    reply: str
    buttons: tuple[str, ...] = ()  # the labels of the quick replies under the reply

    def to_dict(self) -> dict[str, object]:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "route": self.route,
            "reason": self.reason,
            "reply": self.reply,
            "buttons": list(self.buttons),
        }


async def preview(models: ModelProvider, persona: Persona, text: str, max_chars: int = 4000) -> Preview:
    """What ``persona`` would answer to ``text`` as the first message of a conversation,
        decided by the engine's router (``core.router``) and finished as the engine finishes it
    (slots filled, facts guarded: ``core.finishing``). Model calls run in a worker thread;
        a missing model raises ModelMissing."""
    situation = router.Situation(clean_incoming(text, max_chars).text, persona, ConversationState())
    if router.needs_intent(situation):
        intents = models.intent_model(persona.models.intent)
        prediction = (await asyncio.to_thread(intents.predict, [situation.text]))[0]
        situation = replace(situation, prediction=prediction)
    decision = router.decide(situation)
    generated = ""
    if decision.says == "model":
        request = GenerationRequest(
            text=situation.text, intent=decision.intent, style=persona.style, settings=persona.generation
        )
        lm = models.reply_model(persona.models.lm)
        generated = (await asyncio.to_thread(lm.generate, [request]))[0].strip()
        decision = router.after_generation(decision, generated)
    text, decision = finish_reply(decision, persona, generated, (), situation.text)
    predicted = situation.prediction
    return Preview(
        predicted.label if predicted else "",
        predicted.confidence if predicted else 0.0,
        decision.route.value,
        decision.reason,
        text,
        tuple(q.label for q in router.quick_replies(decision, persona)),
    )
