"""The console adapter end to end through the streams (scripted models); the web chat's
tests are in tests/test_webchat.py."""

from __future__ import annotations

import asyncio
import io
import os

import pytest

from adapters.console import ConsoleAdapter
from core.messages import ConversationKey
from core.persona import Messages, Persona, QuickReplies, QuickReplyOption
from tests.helpers import wait_for
from tests.scripted_models import build_engine


@pytest.fixture
async def engine_running(redis, keys):
    engine = build_engine(redis, keys)
    personas = engine.personas
    await personas.put(Persona(bot_id="support", display_name="Ava", greeting="Hello from Ava"))
    async with engine:
        yield engine.bus, personas, engine.conversations.history


async def test_console_piped_prints_one_reply_per_line(engine_running) -> None:
    bus, personas, history = engine_running
    stdin = io.StringIO("hi\nwhere is my order?\n\n")
    stdout = io.StringIO()
    async with ConsoleAdapter(bus, bot_id="support", personas=personas) as console:
        answered = await console.chat("alice", stdin=stdin, stdout=stdout)
    lines = stdout.getvalue().splitlines()
    assert answered == 3 and len(lines) == 3
    assert lines[0].startswith("answer to hi") and lines[1].startswith("answer to where is my order?")
    assert "empty" in lines[2]
    export = await history.export_user("console", "alice")
    assert sum(len(v) for v in export.values()) == 6


async def test_console_without_a_worker_says_so_in_one_line(redis, keys) -> None:
    from core.bus import Bus
    from core.errors import BotUnavailable
    from core.persona import PersonaStore

    personas = PersonaStore(redis, keys)
    await personas.put(Persona(bot_id="support", display_name="Ava"))
    stdin, stdout = io.StringIO("hi\n"), io.StringIO()
    async with ConsoleAdapter(
        Bus(redis, keys), bot_id="support", personas=personas, reply_timeout=0.5
    ) as console:
        with pytest.raises(BotUnavailable, match=r"no reply within 0\.5 s: is an engine worker running"):
            await console.chat("erin", stdin=stdin, stdout=stdout)


async def test_console_on_a_held_conversation_gets_a_receipt_then_the_agents_reply(redis, keys) -> None:
    """Once the team holds the conversation the engine sends only a receipt: the console
    stops waiting at once (no two-minute timeout) and prints the agent's answer when it
    comes, named after the agent."""
    engine = build_engine(redis, keys)
    await engine.personas.put(Persona(bot_id="support", display_name="Ava"))
    read_end, write_end = os.pipe()
    stdout = io.StringIO()
    async with (
        engine,
        ConsoleAdapter(engine.bus, bot_id="support", personas=engine.personas, reply_timeout=30.0) as console,
    ):
        with os.fdopen(read_end) as stdin, os.fdopen(write_end, "w") as feed:
            chatting = asyncio.create_task(console.chat("bob", stdin=stdin, stdout=stdout))
            feed.write("[contact_human_agent:0.95] a person please\n")
            feed.flush()
            await wait_for(lambda: len(stdout.getvalue().splitlines()) == 1, what="hand-off line")
            feed.write("are you there?\nhello??\n")
            feed.flush()
            await wait_for(lambda: len(stdout.getvalue().splitlines()) == 3, what="two more answers")
            (ticket,) = await engine.tickets.list()
            await engine.tickets.reply(ticket.id, "dana", "Hi Bob, I'm looking at your order now.")
            await wait_for(lambda: "dana: Hi Bob" in stdout.getvalue(), what="the agent's reply")
            feed.close()
            assert await chatting == 3
    lines = stdout.getvalue().splitlines()
    says = Persona(bot_id="support", display_name="Ava").messages
    assert lines[0] == says.handoff  # the hand-off...
    assert lines[1] == says.handoff_waiting  # ...acknowledged once...
    assert lines[2] == ""  # ...then a quiet receipt (piped: an empty line keeps lines paired)
    assert lines[-1] == "dana: Hi Bob, I'm looking at your order now."


async def test_console_numbers_quick_replies_and_a_typed_number_picks_one(redis, keys) -> None:
    engine = build_engine(redis, keys)
    person = QuickReplyOption(label="Talk to a person", intent="contact_human_agent")
    await engine.personas.put(
        Persona(bot_id="support", display_name="Ava", quick_replies=QuickReplies(rephrase=[person]))
    )
    stdin, stdout = io.StringIO("[oos:0.9] blorb\n1\n"), io.StringIO()
    async with engine, ConsoleAdapter(engine.bus, bot_id="support", personas=engine.personas) as console:
        assert await console.chat("carol", stdin=stdin, stdout=stdout) == 2
        turns = await engine.conversations.history.recent(
            ConversationKey("support", "console", "carol", "carol")
        )
    says = Messages()
    assert stdout.getvalue().splitlines() == [f"{says.rephrase}  1. Talk to a person", says.handoff]
    assert [(t.text, t.intent) for t in turns if t.role == "user"][1] == (
        "Talk to a person",
        "contact_human_agent",
    )


async def test_console_commands(engine_running) -> None:
    bus, personas, _history = engine_running
    stdin, stdout = io.StringIO("/help\n/start\n2\n"), io.StringIO()
    async with ConsoleAdapter(bus, bot_id="support", personas=personas) as console:
        await console.chat("dave", stdin=stdin, stdout=stdout)
    lines = stdout.getvalue().splitlines()
    assert lines[:2] == [Messages().help, "Hello from Ava"]
    assert lines[2].startswith("answer to 2")  # no options were offered: a number is text
