"""Every routing decision, in one place: what happens to a message and which text answers.

The router looks at one :class:`Situation` (the cleaned message text, the classifier's
prediction, the conversation's state and the bot's persona) and returns a
:class:`Decision`: the route, why, which persona text answers (``says``) and the
unsure-turn streak to store. In order:

1. no persona for the bot, an empty message, a conversation a human holds, a command,
   a file without text: decided without the classifier (:func:`needs_intent` is False
   for these); a held conversation gets the persona's acknowledgement once, then
   nothing (what the customer sent, files included, is kept for the team); ``/start``
   gets the greeting, ``/help`` the persona's help text, ``/human`` escalates at once;
   a photo, file or voice note without text gets the persona's ``text_only`` line;
2. the classifier could not run: ``unavailable``; a tapped quick reply that stands for
   an intent is routed as that intent, sure, without the classifier;
3. below the persona's confidence threshold, or out of scope: ask to rephrase, and after
   ``escalate_after_low_confidence`` such turns in a row escalate instead of looping;
4. otherwise the persona's ``routing.routes`` map the intent to ``generate``, ``canned``
   or ``escalate``.

After generation, :func:`after_generation` is the second, visible step: a reply model
that failed answers ``unavailable``; one that wrote nothing usable asks to rephrase, and
so does one whose reply the fact guard emptied (:func:`withdrawn`, ``core.finishing``).
:func:`answer_text` names the text that answers and :func:`quick_replies` the buttons
the persona puts under it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from core.conversation import ConversationState
from core.messages import IncomingMessage, QuickReply, Route
from core.persona import Persona, RoutingRules
from core.protocols import OUT_OF_SCOPE, IntentPrediction
from core.ticket import ASK_FOR_PERSON

# Which text answers: the reply model, the persona's canned answer for the intent, or
# one of the persona's fixed messages (a field of ``Persona.messages``).
Says = Literal[
    "model",
    "canned",
    "empty",
    "rephrase",
    "handoff",
    "handoff_waiting",
    "unavailable",
    "nothing",  # the bot stays quiet (a person has the conversation and it acknowledged once)
    "greeting",  # the persona's greeting (/start)
    "help",
    "text_only",  # a file, photo or voice note without text
]


@dataclass(frozen=True, slots=True)
class Situation:
    """Everything the router looks at for one message."""

    text: str  # cleaned; "" for an empty message
    persona: Persona | None  # None: nobody configured this bot
    state: ConversationState
    prediction: IntentPrediction | None = None  # None until (or unless) classified
    unavailable: str = ""  # why the intent model could not run ("" when it ran)
    message: IncomingMessage | None = None  # its command, chosen intent and attachments


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    reason: str  # one line for logs and the escalation record
    says: Says
    streak: int = 0  # unsure turns in a row after this message (what the state store keeps)
    low_confidence: bool = False  # this turn was unsure (counts towards escalation)
    intent: str = ""  # the intent the route was chosen for ("" when none was)


def needs_intent(situation: Situation) -> bool:
    """Whether the classifier's prediction can change this message's route."""
    return _without_intent(situation) is None and given_prediction(situation) is None


def given_prediction(situation: Situation) -> IntentPrediction | None:
    """The intent the customer chose rather than wrote: a person for ``/human``, or the
    intent of a quick reply the persona offers (one it no longer offers, or a forged
    one, is classified as text); sure, so never "unsure". None for everything else."""
    message, persona = situation.message, situation.persona
    if message is None:
        return None
    if message.command == "human":
        intent = ASK_FOR_PERSON
    elif message.intent and persona is not None and persona.quick_replies.offers(message.intent):
        intent = message.intent
    else:
        return None
    return IntentPrediction(intent, 1.0, intent)


def decide(situation: Situation) -> Decision:
    """The route for one message (first step, before any reply is generated)."""
    decided = _without_intent(situation)
    if decided is not None:
        return decided
    streak = situation.state.unsure_streak
    prediction = given_prediction(situation) or situation.prediction
    if situation.unavailable or prediction is None or situation.persona is None:
        why = situation.unavailable or "the message was not classified"
        return Decision(Route.UNAVAILABLE, why, "unavailable", streak)
    return _by_intent(prediction, situation.persona.routing, streak)


def after_generation(decision: Decision, reply: str, error: str = "") -> Decision:
    """The second step for ``says == "model"``: keep the decision, or say why not."""
    if error:
        return replace(decision, route=Route.UNAVAILABLE, reason=error, says="unavailable")
    if not reply.strip():
        return replace(
            decision, route=Route.REPHRASE, reason="the reply model wrote nothing usable", says="rephrase"
        )
    return decision


def withdrawn(decision: Decision, why: str) -> Decision:
    """A model reply taken back after it was written (the fact guard left it without its
    point): the customer is asked to rephrase instead."""
    return replace(decision, route=Route.REPHRASE, reason=why, says="rephrase")


def answer_text(decision: Decision, persona: Persona, generated: str = "") -> str:
    """The persona text the decision names (slots not yet filled)."""
    says = persona.messages
    match decision.says:
        case "model":
            return generated
        case "canned":
            return persona.routing.canned[decision.intent]
        case "empty":
            return says.empty
        case "rephrase":
            return says.rephrase
        case "handoff":
            return says.handoff
        case "handoff_waiting":
            return says.handoff_waiting
        case "unavailable":
            return says.unavailable
        case "nothing":
            return ""
        case "greeting":
            return persona.greeting
        case "help":
            return says.help
        case "text_only":
            return says.text_only


def quick_replies(decision: Decision, persona: Persona) -> tuple[QuickReply, ...]:
    """The buttons the persona puts under the answer the decision names."""
    offered = persona.quick_replies
    match decision.says:
        case "greeting" | "help" | "rephrase" | "text_only" | "unavailable":
            options = getattr(offered, decision.says)
        case "canned" | "model":
            options = offered.intents.get(decision.intent, [])
        case _:
            options = []
    return tuple(option.as_reply() for option in options)


def _without_intent(situation: Situation) -> Decision | None:
    streak = situation.state.unsure_streak
    message = situation.message
    command = message.command if message else ""
    files = bool(message and message.attachments)
    if situation.persona is None:
        return Decision(Route.UNAVAILABLE, "no persona for this bot", "unavailable", streak)
    if not situation.text and not files:
        return Decision(Route.PROMPT, "empty message", "empty", streak)
    if situation.state.handed_off:  # a command always gets an answer: Discord waits for one
        quiet = situation.state.acknowledged and not command
        says: Says = "nothing" if quiet else "handoff_waiting"
        return Decision(Route.HUMAN, "conversation is with the support team", says, streak)
    if command == "start":
        return Decision(Route.CANNED, "/start: the greeting", "greeting", streak)
    if command == "help":
        return Decision(Route.CANNED, "/help: what the bot can do", "help", streak)
    if command == "human":
        return Decision(
            Route.ESCALATE, "the customer asked for a person (/human)", "handoff", 0, intent=ASK_FOR_PERSON
        )
    if files and not situation.text:
        return Decision(Route.PROMPT, "a file without text: the models read text only", "text_only", streak)
    return None


def _by_intent(prediction: IntentPrediction, rules: RoutingRules, streak: int) -> Decision:
    unsure = prediction.label == OUT_OF_SCOPE or prediction.confidence < rules.confidence_threshold
    if unsure:
        if streak + 1 >= rules.escalate_after_low_confidence:
            return Decision(
                Route.ESCALATE, f"{streak + 1} unsure turns in a row", "handoff", 0, low_confidence=True
            )
        why = (
            "out of scope"
            if prediction.label == OUT_OF_SCOPE
            else f"confidence {prediction.confidence:.2f} < {rules.confidence_threshold:.2f}"
        )
        return Decision(Route.REPHRASE, why, "rephrase", streak + 1, low_confidence=True)
    label = prediction.label
    route = Route(rules.routes.get(label, rules.default_route))
    if route is Route.CANNED and label not in rules.canned:
        route = Route.GENERATE  # a canned route without text would say nothing
    says: Says = "canned" if route is Route.CANNED else "handoff" if route is Route.ESCALATE else "model"
    return Decision(route, f"intent {label} -> {route.value}", says, 0, intent=label)


__all__ = [
    "Decision",
    "Says",
    "Situation",
    "after_generation",
    "answer_text",
    "decide",
    "given_prediction",
    "needs_intent",
    "quick_replies",
    "withdrawn",
]
