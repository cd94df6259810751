"""Deciding what happens to a classified message: answer, canned text, or a human.

The per-bot rules (``RoutingRules``) map intents to routes. Below the confidence
threshold, or when the classifier says out-of-scope, the bot asks the user to rephrase;
after N such turns in a row it escalates instead of looping.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.messages import Route
from core.persona import RoutingRules
from core.protocols import OUT_OF_SCOPE, IntentPrediction


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    reason: str
    low_confidence: bool  # counts towards escalate_after_low_confidence


def decide(prediction: IntentPrediction, rules: RoutingRules, low_confidence_streak: int) -> Decision:
    """The route for one message; ``low_confidence_streak`` is how many unsure turns in
    a row came just before this one."""
    unsure = prediction.label == OUT_OF_SCOPE or prediction.confidence < rules.confidence_threshold
    if unsure:
        if low_confidence_streak + 1 >= rules.escalate_after_low_confidence:
            return Decision(Route.ESCALATE, f"{low_confidence_streak + 1} unsure turns in a row", True)
        why = (
            "out of scope"
            if prediction.label == OUT_OF_SCOPE
            else (f"confidence {prediction.confidence:.2f} < {rules.confidence_threshold:.2f}")
        )
        return Decision(Route.REPHRASE, why, True)
    route = rules.route_for(prediction.label)
    return Decision(route, f"intent {prediction.label} -> {route.value}", False)
