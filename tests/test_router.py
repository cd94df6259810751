"""core/router.py: every route, which persona text answers it, and the unsure streak."""

from __future__ import annotations

import pytest

from bots.personas import default_personas
from core.conversation import ConversationState
from core.history import Turn
from core.messages import Route
from core.persona import Persona, RoutingRules
from core.protocols import OUT_OF_SCOPE, IntentPrediction
from core.router import Decision, Situation, after_generation, answer_text, decide, needs_intent

PERSONA = Persona(bot_id="support", display_name="Ava")
CONFIDENT = IntentPrediction("track_order", 0.9)


def situation(
    text: str = "where is my order?",
    prediction: IntentPrediction | None = CONFIDENT,
    *,
    persona: Persona | None = PERSONA,
    handed_off: bool = False,
    streak: int = 0,
    unavailable: str = "",
) -> Situation:
    state = ConversationState((Turn("user", "earlier"),), handed_off, streak)
    return Situation(text, persona, state, prediction, unavailable)


@pytest.mark.parametrize(
    ("case", "route", "says"),
    [
        (situation(persona=None), Route.UNAVAILABLE, "unavailable"),
        (situation(""), Route.PROMPT, "empty"),
        (situation(handed_off=True), Route.HUMAN, "handoff_waiting"),
        (situation(unavailable="intent model missing"), Route.UNAVAILABLE, "unavailable"),
        (situation(prediction=IntentPrediction("track_order", 0.1)), Route.REPHRASE, "rephrase"),
        (situation(prediction=IntentPrediction(OUT_OF_SCOPE, 0.99)), Route.REPHRASE, "rephrase"),
        (situation(prediction=IntentPrediction("track_order", 0.1), streak=2), Route.ESCALATE, "handoff"),
        (situation(prediction=IntentPrediction("complaint", 0.9)), Route.ESCALATE, "handoff"),
        (situation(prediction=IntentPrediction("greeting", 0.9)), Route.CANNED, "canned"),
        (situation(), Route.GENERATE, "model"),
    ],
)
def test_every_route_and_the_text_that_answers_it(case: Situation, route: Route, says: str) -> None:
    decision = decide(case)
    assert (decision.route, decision.says) == (route, says)


@pytest.mark.parametrize(
    ("case", "needed"),
    [
        (situation(persona=None), False),
        (situation(""), False),
        (situation(handed_off=True), False),
        (situation(prediction=None), True),
    ],
)
def test_the_classifier_runs_only_where_it_can_change_the_route(case: Situation, needed: bool) -> None:
    assert needs_intent(case) is needed


@pytest.mark.parametrize(
    ("prediction", "streak", "route"),
    [
        (IntentPrediction("track_order", 0.9), 0, Route.GENERATE),
        (IntentPrediction("complaint", 0.9), 0, Route.ESCALATE),
        (IntentPrediction("track_order", 0.34), 0, Route.REPHRASE),
        (IntentPrediction("track_order", 0.35), 0, Route.GENERATE),
        (IntentPrediction(OUT_OF_SCOPE, 0.99), 0, Route.REPHRASE),
        (IntentPrediction("track_order", 0.1), 2, Route.ESCALATE),
    ],
)
def test_confidence_threshold_and_escalation_after_unsure_turns(
    prediction: IntentPrediction, streak: int, route: Route
) -> None:
    rules = RoutingRules(confidence_threshold=0.35, escalate_after_low_confidence=3)
    persona = PERSONA.model_copy(update={"routing": rules})
    assert decide(situation(prediction=prediction, persona=persona, streak=streak)).route is route


@pytest.mark.parametrize(
    ("case", "streak", "low_confidence"),
    [
        (situation(prediction=IntentPrediction("track_order", 0.1), streak=1), 2, True),  # one more
        (situation(prediction=IntentPrediction("track_order", 0.1), streak=2), 0, True),  # escalated
        (situation(streak=2), 0, False),  # a confident turn resets it
        (situation("", streak=2), 2, False),  # an empty message leaves it alone
        (situation(handed_off=True, streak=1), 1, False),
        (situation(unavailable="down", streak=1), 1, False),
    ],
)
def test_unsure_streak_to_store(case: Situation, streak: int, low_confidence: bool) -> None:
    decision = decide(case)
    assert (decision.streak, decision.low_confidence) == (streak, low_confidence)


def test_canned_route_without_text_falls_back_to_generate() -> None:
    persona = PERSONA.model_copy(update={"routing": RoutingRules(routes={"x": "canned"})})
    decision = decide(situation(prediction=IntentPrediction("x", 0.9), persona=persona))
    assert (decision.route, decision.says) == (Route.GENERATE, "model")


def test_unmapped_intent_takes_the_default_route() -> None:
    persona = PERSONA.model_copy(update={"routing": RoutingRules(routes={}, default_route="escalate")})
    assert decide(situation(persona=persona)).route is Route.ESCALATE


def test_default_bot_definitions_route_as_documented() -> None:
    [support] = default_personas()

    def route(intent: str) -> Route:
        return decide(situation(prediction=IntentPrediction(intent, 0.99), persona=support)).route

    assert route("complaint") is Route.ESCALATE
    assert route("contact_human_agent") is Route.ESCALATE
    assert route("track_order") is Route.GENERATE


def test_empty_generation_falls_back_to_rephrase_as_its_own_decision() -> None:
    generate = decide(situation())
    fallback = after_generation(generate, "   ")
    assert (fallback.route, fallback.says) == (Route.REPHRASE, "rephrase")
    assert fallback.reason == "the reply model wrote nothing usable"
    assert answer_text(fallback, PERSONA) == PERSONA.messages.rephrase


def test_failed_generation_is_unavailable_and_a_good_one_stands() -> None:
    generate = decide(situation())
    failed = after_generation(generate, "", error="lm model 'x' not found")
    assert (failed.route, failed.says, failed.reason) == (
        Route.UNAVAILABLE,
        "unavailable",
        "lm model 'x' not found",
    )
    assert after_generation(generate, "It ships today.") == generate


def test_answer_text_names_the_persona_text() -> None:
    says = PERSONA.messages
    canned = decide(situation(prediction=IntentPrediction("greeting", 0.9)))
    assert answer_text(canned, PERSONA) == PERSONA.routing.canned["greeting"]
    assert answer_text(decide(situation()), PERSONA, "generated") == "generated"
    expected = {
        "empty": says.empty,
        "rephrase": says.rephrase,
        "handoff": says.handoff,
        "handoff_waiting": says.handoff_waiting,
        "unavailable": says.unavailable,
    }
    for key, text in expected.items():
        assert answer_text(Decision(Route.PROMPT, "", key), PERSONA) == text  # type: ignore[arg-type]
