"""Web chat and console adapters end to end through the streams (scripted models)."""

from __future__ import annotations

import asyncio
import io
import os

import httpx
import pytest

from adapters.console import ConsoleAdapter
from adapters.webchat import COOKIE, WebChatAdapter
from bots.serve import build_app
from core.persona import Persona
from tests.helpers import wait_for
from tests.scripted_models import build_engine


@pytest.fixture
async def engine_running(redis, keys):
    engine = build_engine(redis, keys)
    personas = engine.personas
    await personas.put(Persona(bot_id="support", display_name="Ava", greeting="Hello from Ava"))
    async with engine:
        yield engine.bus, personas, engine.conversations.history


async def test_web_chat_api_and_page(engine_running) -> None:
    bus, personas, _history = engine_running
    web = WebChatAdapter(bus, bot_id="support", personas=personas)
    async with web:
        app = build_app(web, [])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            page = await client.get("/")
            assert page.status_code == 200 and "<textarea" in page.text
            browser_id = page.cookies[COOKIE]
            assert browser_id.startswith("web-")
            r = await client.post("/api/chat", json={"text": "where is my order?"})
            body = r.json()
            assert r.status_code == 200, body
            assert body["user"] == browser_id  # the cookie identifies the browser
            assert (
                body["route"] == "generate" and body["intent"] == "track_order" and body["confidence"] == 0.9
            )
            assert body["text"].startswith("answer to where is my order?")
            explicit = (await client.post("/api/chat", json={"user": "api-user", "text": "hi"})).json()
            assert explicit["user"] == "api-user"
            bot = (await client.get("/api/bot")).json()
            assert bot["greeting"] == "Hello from Ava"
            health = (await client.get("/healthz")).json()
            assert health["adapters"]["web"] == "running"
            assert "chatbot_messages_total" in (await client.get("/metrics")).text


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"not json", 400), (b'{"text": 5, "user": "u"}', 400), (b'{"text": "hi"}', 400), (b"x" * 70000, 413)],
)
async def test_web_chat_rejects_bad_requests_with_a_clear_error(
    engine_running, body: bytes, status: int
) -> None:
    bus, personas, _h = engine_running
    async with WebChatAdapter(bus, bot_id="support", personas=personas) as web:
        transport = httpx.ASGITransport(app=build_app(web, []))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/api/chat", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and r.json()["error"]


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
