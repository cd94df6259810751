"""Discord's buttons, application commands and attachments end to end: the real discord.py
against the Discord emulator (INTERACTION_CREATE over the gateway, the interaction
callback, the deferred response's edit), the real streams and the real engine
(scripted models)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.interactive import DONE
from core.engine import Engine
from core.keys import Keys
from core.messages import ConversationKey
from core.persona import Messages, Persona, QuickReplies, QuickReplyOption
from core.retry import Backoff
from tests.emulators.discord import CUSTOMER, DiscordEmulator
from tests.helpers import wait_for
from tests.scripted_models import build_engine
from tests.test_adapter_discord import config_for

CANCEL = QuickReplyOption(label="Cancel my order", intent="cancel_order")
PERSON = QuickReplyOption(label="Talk to a person", intent="contact_human_agent")
PERSONA = Persona(
    bot_id="support",
    display_name="Ava",
    quick_replies=QuickReplies(intents={"track_order": [CANCEL, PERSON]}),
)


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    emu = await DiscordEmulator().start()
    try:
        yield emu
    finally:
        await emu.stop()


@contextlib.asynccontextmanager
async def running(
    redis: Any, keys: Keys, emulator: DiscordEmulator, *, engine: bool = True
) -> AsyncIterator[Engine]:
    built = build_engine(redis, keys)
    await built.personas.put(PERSONA)
    adapter = DiscordAdapter(
        built.bus,
        config_for(emulator),
        bot_id="support",
        personas=built.personas,
        backoff=Backoff(first=0.05),
    )
    async with contextlib.AsyncExitStack() as stack:
        if engine:
            await stack.enter_async_context(built)
        await stack.enter_async_context(adapter)
        yield built


def conversation(emulator: DiscordEmulator) -> ConversationKey:
    channel = str(emulator.dm_channel_id(CUSTOMER))
    return ConversationKey("support", "discord", channel, CUSTOMER["id"])


def labels(components: list[dict[str, Any]]) -> list[str]:
    return [c["label"] for row in components for c in row["components"]]


async def test_a_click_is_acknowledged_and_answered_once_even_when_redelivered(
    redis: Any, keys: Keys, emulator: DiscordEmulator
) -> None:
    async with running(redis, keys, emulator) as engine:
        await emulator.message_create("where is my order?")
        await wait_for(lambda: emulator.sent, what="the answer with buttons")
        answer = emulator.sent[0]
        assert labels(answer.body["components"]) == ["Cancel my order", "Talk to a person"]
        clicked = await emulator.click(answer, "Cancel my order")
        await wait_for(lambda: len(emulator.sent) == 2, what="the answer to the click")
        await emulator.redeliver(clicked)  # the same interaction again
        barrier = await emulator.message_create("thanks")
        await wait_for(lambda: emulator.replies_to(barrier), what="the barrier's answer")
        turns = await engine.conversations.history.recent(conversation(emulator), 50)
    answers = [m.content for m in emulator.sent[1:]]
    assert answers[0].startswith("answer to Cancel my order") and answers[1].startswith("answer to thanks")
    assert emulator.callbacks == [(clicked, 7, 204)]  # acknowledged once, with UPDATE_MESSAGE
    (marked,) = [
        c for row in emulator.messages[next(iter(emulator.messages))]["components"] for c in row["components"]
    ]
    assert (marked["label"], marked["custom_id"], marked["disabled"]) == ("✓ Cancel my order", DONE, True)
    chose = [t for t in turns if t.role == "user"][1]
    assert (chose.text, chose.intent) == ("Cancel my order", "cancel_order")


async def test_help_and_human_are_application_commands(
    redis: Any, keys: Keys, emulator: DiscordEmulator
) -> None:
    async with running(redis, keys, emulator) as engine:
        assert [c["name"] for c in emulator.commands] == ["help", "human"]  # registered at start
        asked = await emulator.slash("help")
        token = emulator.interactions[asked]["token"]
        await wait_for(lambda: token in emulator.originals, what="the help text")
        human = await emulator.slash("human")
        human_token = emulator.interactions[human]["token"]
        await wait_for(lambda: human_token in emulator.originals, what="the hand-off")
        ticket = (await engine.tickets.latest_many([conversation(emulator)]))[conversation(emulator)]
    says = Messages()
    assert emulator.callbacks == [(asked, 5, 204), (human, 5, 204)]  # deferred ("thinking..."), once each
    assert emulator.originals[token]["content"] == says.help  # the answer replaced "thinking..."
    assert emulator.originals[human_token]["content"] == says.handoff
    assert emulator.sent == []  # nothing posted besides the responses
    assert (ticket.reason, ticket.intent, ticket.held) == ("asked", "contact_human_agent", True)


async def test_a_command_answered_after_its_token_expired_goes_to_the_channel(
    redis: Any, keys: Keys, emulator: DiscordEmulator
) -> None:
    async with running(redis, keys, emulator, engine=False) as engine:
        asked = await emulator.slash("help")
        await wait_for(lambda: emulator.callbacks, what="the deferral")
        del emulator.interactions[asked]  # 15 minutes later Discord forgets the interaction
        async with engine:
            await wait_for(lambda: emulator.sent, what="the answer as a channel message")
    assert [(m.channel_id, m.content) for m in emulator.sent] == [
        (str(emulator.dm_channel_id(CUSTOMER)), Messages().help)
    ]


async def test_without_the_commands_scope_one_line_says_how(
    redis: Any, keys: Keys, emulator: DiscordEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.commands_scope = False
    caplog.set_level(logging.WARNING)
    async with running(redis, keys, emulator):
        await emulator.message_create("where is my order?")  # messages are answered all the same
        await wait_for(lambda: emulator.sent)
    (line,) = [r.getMessage() for r in caplog.records if "applications.commands" in r.getMessage()]
    assert "403" in line and "OAuth2 > URL Generator" in line and "\n" not in line
