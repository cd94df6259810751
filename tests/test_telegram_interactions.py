"""Telegram's buttons, commands and attachments end to end: the real python-telegram-bot
against the Bot API emulator, the real streams and the real engine (scripted models) with
a persona that offers quick replies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.interactive import DONE
from adapters.telegram import TelegramAdapter
from core.engine import Engine
from core.history import Turn
from core.keys import Keys
from core.messages import ConversationKey, IncomingMessage
from core.persona import Messages, Persona, QuickReplies, QuickReplyOption
from tests.emulators.telegram import GROUP_ID, EmulatedBot, TelegramEmulator
from tests.helpers import wait_for
from tests.scripted_models import build_engine
from tests.test_adapter_telegram import TOKEN, make_adapter

TRACK = QuickReplyOption(label="Track my order", text="Where is my order?")
CANCEL = QuickReplyOption(label="Cancel my order", intent="cancel_order")
PERSON = QuickReplyOption(label="Talk to a person", intent="contact_human_agent")
PERSONA = Persona(
    bot_id="support",
    display_name="Ava",
    greeting="Hi, I'm Ava. How can I help?",
    quick_replies=QuickReplies(greeting=[TRACK, CANCEL], rephrase=[PERSON]),
)
DM = ConversationKey("support", "telegram", "42", "42")


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def bot(tg: TelegramEmulator) -> EmulatedBot:
    return tg.add_bot(TOKEN, "shop_bot")


@contextlib.asynccontextmanager
async def running(
    redis: Any, keys: Keys, tg: TelegramEmulator
) -> AsyncIterator[tuple[Engine, TelegramAdapter]]:
    engine = build_engine(redis, keys)
    await engine.personas.put(PERSONA)
    async with engine, make_adapter(engine.bus, tg, personas=engine.personas) as adapter:
        yield engine, adapter  # type: ignore[misc]


def labels(sent: dict[str, Any]) -> list[str]:
    return [b["text"] for row in sent.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


async def history(engine: Engine, conv: ConversationKey = DM) -> list[Turn]:
    return await engine.conversations.history.recent(conv, 50)


async def test_start_sends_the_greeting_with_its_buttons_and_keeps_the_deep_link(
    redis: Any, keys: Keys, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running(redis, keys, tg) as (engine, _adapter):
        bot.dm("/start promo-42")
        await wait_for(lambda: bot.sent, what="the greeting")
        turns = await history(engine)
    (greeting,) = bot.sent
    assert greeting["text"] == "Hi, I'm Ava. How can I help?"
    assert labels(greeting) == ["Track my order", "Cancel my order"]
    assert [(t.role, t.text, t.route) for t in turns] == [
        ("user", "/start promo-42", ""),
        ("bot", "Hi, I'm Ava. How can I help?", "canned"),
    ]
    (_entry, raw), *_ = await redis.xrange(keys.intake())
    message = IncomingMessage.from_json(raw["data"])
    assert (message.command, message.meta["start"]) == ("start", "promo-42")


async def test_a_tap_is_answered_once_even_when_telegram_redelivers_it(
    redis: Any, keys: Keys, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running(redis, keys, tg) as (engine, _adapter):
        bot.dm("/start")
        await wait_for(lambda: bot.sent, what="the greeting")
        tap = bot.tap(bot.sent[0], "Cancel my order")
        await wait_for(lambda: len(bot.sent) == 2, what="the answer to the tap")
        bot.push(tap)  # the same callback query again (a redelivered update)
        bot.dm("thanks")  # a barrier: answered after the redelivery, were it taken again
        await wait_for(lambda: len(bot.sent) == 3, what="the barrier's answer")
        turns = await history(engine)
    answers = bot.texts(42)[1:]
    assert answers[0].startswith("answer to Cancel my order") and answers[1].startswith("answer to thanks")
    answering = [c for c in bot.calls if c.method == "answerCallbackQuery"]  # tried, not only accepted
    assert [(c.params["callback_query_id"], c.status) for c in answering] == [
        (tap["callback_query"]["id"], 200)
    ]
    (marked,) = bot.markups
    assert marked["reply_markup"]["inline_keyboard"] == [
        [{"text": "✓ Cancel my order", "callback_data": DONE}]
    ]
    chose = [t for t in turns if t.role == "user"][1]  # stored as what the customer chose
    assert (chose.text, chose.intent, chose.confidence) == ("Cancel my order", "cancel_order", 1.0)


async def test_a_text_button_is_classified_like_typed_text(
    redis: Any, keys: Keys, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running(redis, keys, tg) as (engine, _adapter):
        bot.dm("/start")
        await wait_for(lambda: bot.sent)
        bot.tap(bot.sent[0], "Track my order")
        await wait_for(lambda: len(bot.sent) == 2)
        turns = await history(engine)
    assert bot.texts(42)[1].startswith("answer to Where is my order?")
    assert (turns[2].text, turns[2].intent) == ("Where is my order?", "track_order")  # the classifier's


async def test_talk_to_a_person_on_an_unsure_reply_escalates_at_once(
    redis: Any, keys: Keys, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running(redis, keys, tg) as (engine, _adapter):
        bot.dm("[oos:0.9] blorb")
        await wait_for(lambda: bot.sent, what="the rephrase")
        assert bot.texts(42) == [Messages().rephrase] and labels(bot.sent[0]) == ["Talk to a person"]
        bot.tap(bot.sent[0], "Talk to a person")
        await wait_for(lambda: len(bot.sent) == 2, what="the hand-off")
        ticket = (await engine.tickets.latest_many([DM]))[DM]
    assert bot.texts(42)[1] == Messages().handoff
    assert (ticket.reason, ticket.intent, ticket.held) == ("asked", "contact_human_agent", True)


async def test_help_and_human_commands(
    redis: Any, keys: Keys, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running(redis, keys, tg) as (engine, _adapter):
        bot.dm("/help")
        await wait_for(lambda: bot.sent)
        bot.group("/help@shop_bot")  # a command in a group names the bot
        bot.group("/help@other_bot")  # someone else's: not for us
        await wait_for(lambda: bot.texts(GROUP_ID))
        bot.dm("/human")
        await wait_for(lambda: len(bot.texts(42)) == 2)
        bot.dm("/human")  # again, while the team holds the conversation: still an answer
        await wait_for(lambda: len(bot.texts(42)) == 3)
        ticket = (await engine.tickets.latest_many([DM]))[DM]
    says = Messages()
    assert bot.texts(42) == [says.help, says.handoff, says.handoff_waiting]
    assert bot.texts(GROUP_ID) == [says.help]
    assert (ticket.reason, ticket.detail) == ("asked", "the customer asked for a person")


async def test_photo_document_and_voice_are_kept_for_the_team(
    redis: Any, keys: Keys, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running(redis, keys, tg) as (engine, _adapter):
        bot.photo()
        await wait_for(lambda: bot.sent, what="the text-only answer")
        bot.photo(caption="[complaint:0.9] it arrived broken")  # a caption is read as text
        await wait_for(lambda: len(bot.sent) == 2, what="the escalation")
        bot.document("invoice.pdf")  # the team holds it now: kept, acknowledged once
        bot.voice()
        ticket = (await engine.tickets.latest_many([DM]))[DM]

        async def stored() -> bool:
            return len(await engine.tickets.transcript(ticket.id)) == 7  # 4 sent, 3 answered

        await wait_for(stored, what="every turn stored")
        transcript = await engine.tickets.transcript(ticket.id)
    says = Messages()
    assert bot.texts(42) == [says.text_only, says.handoff, says.handoff_waiting]
    sent = [
        (t.text, [(a.kind, a.file_id, a.size, a.name) for a in t.attachments])
        for t in transcript
        if t.role == "user"
    ]
    assert sent == [
        ("", [("photo", "AgACAgIAAx-large", 64000, "")]),  # the largest size
        ("[complaint:0.9] it arrived broken", [("photo", "AgACAgIAAx-large", 64000, "")]),
        ("", [("document", "BQACAgIAAx-doc", 48213, "invoice.pdf")]),
        ("", [("voice", "AwACAgIAAx-voice", 9100, "")]),
    ]
    assert all(a.url == "" for t in transcript for a in t.attachments)  # Telegram's links hold the token
