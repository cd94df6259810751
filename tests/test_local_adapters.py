"""The console adapter end to end through the streams (scripted models); the web chat's
tests are in tests/test_webchat.py."""

from __future__ import annotations

import io

import pytest

from adapters.console import ConsoleAdapter
from core.persona import Persona
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
