"""Quick replies, commands and attachments in the core: the message model through JSON,
the persona's rules for buttons, and the router's decisions (core/router.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from pydantic import ValidationError

from adapters.interactive import buttons_for, pick
from bots.personas import default_personas
from core.conversation import ConversationState
from core.history import Turn
from core.messages import Attachment, IncomingMessage, QuickReply, Reply, Route, parse_command
from core.persona import Persona, QuickReplies, QuickReplyOption
from core.protocols import IntentPrediction
from core.router import Situation, answer_text, decide, given_prediction, needs_intent, quick_replies

PERSON = QuickReplyOption(label="Talk to a person", intent="contact_human_agent")
TRACK = QuickReplyOption(label="Track my order", text="Where is my order?")
PERSONA = Persona(
    bot_id="support",
    display_name="Ava",
    greeting="Hello!",
    quick_replies=QuickReplies(greeting=[TRACK], rephrase=[PERSON], intents={"track_order": [PERSON]}),
)
PHOTO = Attachment(kind="photo", size=2048, file_id="F1", url="https://cdn.example/p.png", mime="image/png")


def message(text: str = "hi", **fields: object) -> IncomingMessage:
    return IncomingMessage("support", "telegram", "42", "42", text, **fields)  # type: ignore[arg-type]


def situation(msg: IncomingMessage, *, held: bool = False, acknowledged: bool = False) -> Situation:
    state = ConversationState((), held, 0, acknowledged)
    return Situation(msg.text, PERSONA, state, IntentPrediction("track_order", 0.9), "", msg)


# -- the message model ------------------------------------------------------------------------
def test_new_fields_survive_the_streams_and_old_records_still_load() -> None:
    sent = message("", command="start", intent="x", attachments=(PHOTO,))
    assert IncomingMessage.from_json(sent.to_json()) == sent
    reply = Reply.to(sent, "Hello!", Route.CANNED, quick_replies=(TRACK.as_reply(), PERSON.as_reply()))
    assert Reply.from_json(reply.to_json()) == reply
    old = json.loads(reply.to_json())
    del old["quick_replies"]  # a record written before quick replies existed
    assert Reply.from_json(json.dumps(old)).quick_replies == ()
    newer = json.loads(sent.to_json()) | {"mood": "happy"}  # a field a newer producer added
    assert IncomingMessage.from_json(json.dumps(newer)) == sent
    turn = Turn("user", "", attachments=(PHOTO,))
    assert Turn.from_json(turn.to_json()) == turn
    assert "attachments" not in json.loads(Turn("user", "hi").to_json())  # most turns stay small


def test_a_payload_names_what_a_tap_sends() -> None:
    assert (
        TRACK.as_reply().payload == "t:Where is my order?"
        and PERSON.as_reply().payload == "i:contact_human_agent"
    )
    tapped = QuickReply.from_payload("i:contact_human_agent", "Talk to a person")
    assert (
        tapped == QuickReply("Talk to a person", "", "contact_human_agent")
        and tapped.sends == "Talk to a person"
    )
    assert QuickReply.from_payload("t:Where is my order?", "Track").sends == "Where is my order?"
    assert QuickReply.from_payload("x", "✓ Track") is None and QuickReply.from_payload("z:1", "") is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/start", ("start", "")),
        ("/start promo-42", ("start", "promo-42")),
        ("/help@shop_bot", ("help", "")),
        ("/HUMAN", ("human", "")),
        ("/refund now", ("", "")),
        ("help", ("", "")),
        ("", ("", "")),
    ],
)
def test_parse_command(text: str, parsed: tuple[str, str]) -> None:
    assert parse_command(text) == parsed


# -- the persona ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "error"),
    [
        ({"label": "Go", "text": "x" * 63}, "at most 62 bytes"),
        ({"label": "Go", "text": "é" * 32}, "at most 62 bytes"),  # bytes, not characters
        ({"label": "Go", "text": "go", "intent": "track_order"}, "not both"),
        ({"label": ""}, "at least 1 character"),
        ({"label": "Go", "intent": "has spaces"}, "pattern"),
    ],
)
def test_a_quick_reply_must_fit_every_platform(option: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        QuickReplyOption.model_validate(option)


def test_two_buttons_sending_the_same_thing_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"quick_replies.greeting: two buttons send the same thing"):
        QuickReplies(greeting=[QuickReplyOption(label="Hi"), QuickReplyOption(label="Hello", text="Hi")])


def test_the_default_bot_offers_buttons() -> None:
    (support,) = [p for p in default_personas() if p.bot_id == "support"]
    assert [o.label for o in support.quick_replies.greeting] == ["Track my order", "Cancel my order"]
    assert [o.intent for o in support.quick_replies.rephrase] == ["contact_human_agent"]


# -- the router ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("msg", "route", "says"),
    [
        (message("/start", command="start"), Route.CANNED, "greeting"),
        (message("/help", command="help"), Route.CANNED, "help"),
        (message("/human", command="human"), Route.ESCALATE, "handoff"),
        (message("", attachments=(PHOTO,)), Route.PROMPT, "text_only"),
        (message("it came broken", attachments=(PHOTO,)), Route.GENERATE, "model"),  # a caption is text
        (message("Talk to a person", intent="contact_human_agent"), Route.ESCALATE, "handoff"),
    ],
)
def test_commands_files_and_chosen_intents(msg: IncomingMessage, route: Route, says: str) -> None:
    decision = decide(situation(msg))
    assert (decision.route, decision.says) == (route, says)


def test_commands_files_and_offered_intents_skip_the_classifier() -> None:
    for msg in (message("/help", command="help"), message("", attachments=(PHOTO,))):
        assert not needs_intent(situation(msg))
    chosen = message("Talk to a person", intent="contact_human_agent")
    assert not needs_intent(situation(chosen))
    assert given_prediction(situation(chosen)) == IntentPrediction(
        "contact_human_agent", 1.0, "contact_human_agent"
    )
    assert given_prediction(situation(message("/human", command="human"))) is not None


def test_an_intent_the_persona_does_not_offer_is_classified_as_text() -> None:
    forged = situation(message("Refund!", intent="refund"))  # a web client can send anything
    assert needs_intent(forged) and given_prediction(forged) is None
    assert decide(forged).intent == "track_order"  # the classifier's


def test_on_a_held_conversation_files_are_kept_and_commands_still_answered() -> None:
    photo = decide(situation(message("", attachments=(PHOTO,)), held=True, acknowledged=True))
    command = decide(situation(message("/human", command="human"), held=True, acknowledged=True))
    assert (photo.route, photo.says) == (Route.HUMAN, "nothing")  # stored for the agent, quiet
    assert (command.route, command.says) == (Route.HUMAN, "handoff_waiting")


def test_buttons_go_under_the_answer_they_belong_to() -> None:
    greeting = decide(situation(message("/start", command="start")))
    assert answer_text(greeting, PERSONA) == "Hello!"
    assert [q.label for q in quick_replies(greeting, PERSONA)] == ["Track my order"]
    generated = decide(situation(message("where is my order?")))
    assert [q.intent for q in quick_replies(generated, PERSONA)] == [
        "contact_human_agent"
    ]  # intents.track_order
    helped = decide(situation(message("/help", command="help")))
    assert quick_replies(helped, PERSONA) == ()


def test_buttons_go_under_the_last_part_and_a_number_picks_one() -> None:
    choices = (TRACK.as_reply(), PERSON.as_reply())
    reply = Reply("support", "telegram", "42", "42", "word " * 50, Route.GENERATE, quick_replies=choices)
    assert buttons_for(reply, 0, 100) == () and buttons_for(reply, 2, 100) == choices  # three parts
    assert buttons_for(replace(reply, quick_replies=()), 0, 4096) == ()
    assert pick("2", choices) == choices[1] and pick(" 1. ", choices) == choices[0]
    assert pick("3", choices) is None and pick("one", choices) is None
