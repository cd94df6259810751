"""The console adapter end to end through the streams (scripted models); the web chat's
tests are in tests/test_webchat.py."""

from __future__ import annotations

import asyncio
import io

import pytest

from adapters.console import ConsoleAdapter
from core.bus import Bus
from core.engine import Engine, EngineConfig
from core.history import History
from core.persona import Persona, PersonaStore
from tests.scripted_models import ScriptedProvider


@pytest.fixture
async def engine_running(redis, keys):
    history = History(redis, keys)
    personas = PersonaStore(redis, keys)
    await personas.put(Persona(bot_id="support", display_name="Ava", greeting="Hello from Ava"))
    engine = Engine(redis, keys, ScriptedProvider(), history=history, config=EngineConfig(block_ms=50))
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    yield Bus(redis, keys), personas, history
    stop.set()
    await task


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
