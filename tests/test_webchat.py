"""The web chat's identity, input limits, history and push channel (real Redis, the real
engine with scripted models, the web app as `chatbot run` composes it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.webchat import COOKIE
from core.messages import ConversationKey
from core.persona import Messages, Persona, QuickReplies, QuickReplyOption
from tests.desk_stack import Stack, running_stack, serving
from tests.helpers import wait_for


@pytest.fixture
async def stack(redis, keys) -> AsyncIterator[Stack]:
    async with running_stack(redis, keys) as s:
        yield s


async def test_browser_identity_is_a_signed_cookie(stack: Stack) -> None:
    async with stack.client() as client:
        page = await client.get("/")
        assert page.status_code == 200 and "<textarea" in page.text
        assert "<script>" not in page.text  # no inline script: the CSP forbids it
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        r = await client.post("/api/chat", json={"text": "where is my order?"})
        body = r.json()
        assert r.status_code == 200, body
        assert body["user"].startswith("web-") and body["user"] not in page.cookies[COOKIE].split(".")[-1]
        assert body["route"] == "generate" and body["text"].startswith("answer to where is my order?")
        again = (await client.post("/api/chat", json={"text": "thanks"})).json()
        assert again["user"] == body["user"]  # the same browser keeps its identity
        history = (await client.get("/api/chat/history")).json()
        assert [t["role"] for t in history["turns"]] == ["user", "bot", "user", "bot"]
        assert history["turns"][0]["text"] == "where is my order?"
    async with stack.client() as forger:
        forger.cookies.set(COOKIE, body["user"])  # an unsigned id is not an identity
        r = await forger.post("/api/chat", json={"text": "hi"})
        assert r.json()["user"] != body["user"]
        assert (await forger.get("/api/chat/history")).json()["turns"][0]["text"] == "hi"


async def test_naming_a_user_needs_an_api_token(stack: Stack) -> None:
    token = await stack.account("integrator")
    async with stack.client() as client:
        r = await client.post("/api/chat", json={"user": "alice", "text": "hi"})
        assert r.status_code == 403 and "API token" in r.json()["error"]
        assert await stack.history.recent(_conv("alice")) == []  # nothing written for alice
        bad = await client.post(
            "/api/chat", json={"user": "alice", "text": "hi"}, headers={"Authorization": "Bearer nope"}
        )
        assert bad.status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        ok = await client.post("/api/chat", json={"user": "alice", "text": "hi"}, headers=auth)
        assert ok.status_code == 200 and ok.json()["user"] == "alice"
        history = await client.get("/api/chat/history", params={"user": "alice"}, headers=auth)
        assert history.json()["turns"][0]["text"] == "hi"
        assert (await client.get("/api/chat/history", params={"user": "alice"})).status_code == 403


async def test_control_characters_and_lone_surrogates_are_cleaned(stack: Stack) -> None:
    token = await stack.account("integrator")
    raw = '{"user": "ali\\u0000ce\\ud800\\u202e", "name": "Bob\\u0007 <b>\\udfff", "text": "hi"}'
    async with stack.client() as client:
        r = await client.post(
            "/api/chat",
            content=raw.encode(),
            headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["user"] == "alice"
    turns = await stack.history.recent(_conv("alice"))
    assert turns[0].display_name == "Bob <b>"  # kept as text; pages show it with textContent


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"text": 5}', 400),
        (b"[1, 2]", 400),
        (b"[" * 5000 + b"]" * 5000, 400),  # deep nesting: a 400, never a RecursionError 500
        (b'{"text": "' + b"[" * 20000 + b'"}', 200),  # brackets inside a string are just text
        (b'{"text": "hi", "bot": "nobody"}', 400),
        (b'{"text": "Talk to a person", "choice": "q:nothing"}', 400),  # not a quick reply's choice
        (b'{"text": "hi", "choice": 5}', 400),
        (b'{"text": "hi", "command": "reboot"}', 400),
        (b"x" * 70000, 413),
    ],
)
async def test_bad_requests_get_one_clear_line(stack: Stack, body: bytes, status: int) -> None:
    async with stack.client() as client:
        r = await asyncio.wait_for(
            client.post("/api/chat", content=body, headers={"content-type": "application/json"}), 20
        )
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["error"]


async def test_unknown_bot_is_refused_without_waiting_for_a_reply(stack: Stack) -> None:
    async with stack.client() as client:
        r = await client.post("/api/chat", json={"text": "hi", "bot": "ghost"})
    assert r.status_code == 400 and "unknown bot 'ghost'" in r.json()["error"]
    assert await stack.redis.xlen(stack.keys.intake()) == 0  # nothing queued for a bot nobody runs


async def test_a_10_mb_body_is_refused_without_reading_it(stack: Stack) -> None:
    sent = 0

    async def ten_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(160):
            sent += 65536
            yield b"x" * 65536

    async with stack.client() as client:
        chunked = await client.post("/api/chat", content=ten_megabytes())  # no Content-Length
        declared = await client.post(
            "/api/chat", content=b"{}", headers={"content-length": str(10 * 1024 * 1024)}
        )
    assert chunked.status_code == 413 and sent <= 2 * 65536  # stopped after the limit, not 10 MB
    assert declared.status_code == 413


async def test_held_conversation_answers_at_once_and_the_agent_reply_is_pushed(stack: Stack) -> None:
    async with serving(stack.app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        first = (await client.post("/api/chat", json={"text": "hello"})).json()
        user = first["user"]
        ticket = await stack.open_ticket(user, name="Carol")
        held = await client.post("/api/chat", json={"text": "anyone there?"})
        assert held.status_code == 200 and held.json()["route"] == "human"

        async def held_stored() -> bool:  # the engine's turn, so the agent's answer comes after it
            return "anyone there?" in [t.text for t in await stack.history.recent(_conv(user))]

        await wait_for(held_stored, what="the held message in the transcript")
        async with client.stream("GET", "/api/chat/events") as stream:
            lines = stream.aiter_lines()
            assert await _next_event(lines) == ("ready", {})
            await stack.tickets.reply(ticket.id, "dana", "Hi Carol, Dana here. <b>Let me look.</b>")
            kind, data = await asyncio.wait_for(_next_event(lines), 20)
            if data.get("text") == Messages().handoff_waiting:  # the receipt, when delivered late
                kind, data = await asyncio.wait_for(_next_event(lines), 20)
        assert kind == "reply" and data["role"] == "agent" and data["name"] == "dana"
        assert data["text"] == "Hi Carol, Dana here. <b>Let me look.</b>"
        turns = (await client.get("/api/chat/history")).json()["turns"]
        assert {"role": "agent", "name": "dana"}.items() <= turns[-1].items()
        assert "anyone there?" in [t["text"] for t in turns]


async def test_pushed_replies_reach_only_their_customer(stack: Stack) -> None:
    async with (
        serving(stack.app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as alice,
        httpx.AsyncClient(base_url=url, timeout=30) as bob,
    ):
        a = (await alice.post("/api/chat", json={"text": "hi"})).json()["user"]
        b = (await bob.post("/api/chat", json={"text": "hi"})).json()["user"]
        for_alice, for_bob = await stack.open_ticket(a), await stack.open_ticket(b)
        async with (
            bob.stream("GET", "/api/chat/events") as bob_stream,
            alice.stream("GET", "/api/chat/events") as alice_stream,
        ):
            bob_lines, alice_lines = bob_stream.aiter_lines(), alice_stream.aiter_lines()
            assert (await _next_event(bob_lines))[0] == "ready"
            assert (await _next_event(alice_lines))[0] == "ready"
            await stack.tickets.reply(for_alice.id, "dana", "for alice only")
            await stack.tickets.reply(for_bob.id, "dana", "for bob")
            assert (await asyncio.wait_for(_next_event(alice_lines), 20))[1]["text"] == "for alice only"
            # Bob's first pushed reply is his own: Alice's never reached his page.
            assert (await asyncio.wait_for(_next_event(bob_lines), 20))[1]["text"] == "for bob"


async def test_quick_replies_and_the_talk_to_a_person_button(stack: Stack) -> None:
    person = QuickReplyOption(label="Talk to a person", intent="contact_human_agent")
    track = QuickReplyOption(label="Track my order", text="Where is my order?")
    quick = QuickReplies(greeting=[track], rephrase=[person])
    await stack.personas.put(Persona(bot_id="support", display_name="Ava", quick_replies=quick))
    async with stack.client() as client:
        about = (await client.get("/api/bot")).json()
        unsure = (await client.post("/api/chat", json={"text": "[oos:0.9] blorb"})).json()
        chose = await client.post(
            "/api/chat", json={"text": "Track my order", "choice": "t:Where is my order?"}
        )
        forged = await client.post("/api/chat", json={"text": "Refund!", "choice": "i:refund"})  # not offered
        tapped = (
            await client.post("/api/chat", json={"text": "Talk to a person", **unsure["quick_replies"][0]})
        ).json()
        user = tapped["user"]
    assert about["quick_replies"] == [{"label": "Track my order", "choice": "t:Where is my order?"}]
    assert unsure["route"] == "rephrase"
    assert unsure["quick_replies"] == [{"label": "Talk to a person", "choice": "i:contact_human_agent"}]
    assert chose.json()["text"].startswith("answer to Where is my order?")
    assert (forged.json()["route"], forged.json()["intent"]) == ("generate", "track_order")  # classified
    assert (tapped["route"], tapped["intent"], tapped["confidence"]) == (
        "escalate",
        "contact_human_agent",
        1.0,
    )
    said = [(t.text, t.intent) for t in await stack.history.recent(_conv(user)) if t.role == "user"]
    assert said == [
        ("[oos:0.9] blorb", "out_of_scope"),
        ("Where is my order?", "track_order"),
        ("Refund!", "track_order"),
        ("Talk to a person", "contact_human_agent"),  # what the customer chose
    ]


async def test_the_talk_to_a_person_button_escalates_at_once(stack: Stack) -> None:
    async with stack.client() as client:
        r = await client.post("/api/chat", json={"text": "Talk to a person", "command": "human"})
        typed = await client.post("/api/chat", json={"text": "/help"})
    body = r.json()
    assert (body["route"], body["text"]) == ("escalate", Messages().handoff)
    (ticket,) = await stack.tickets.list()
    assert (ticket.reason, ticket.user_id) == ("asked", body["user"])
    assert typed.json()["route"] == "human"  # held by the team now: the help waits with the ticket


async def _next_event(lines: AsyncIterator[str]) -> tuple[str, dict[str, str]]:
    kind, data = "", ""
    async for line in lines:
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
        elif not line and kind:
            return kind, json.loads(data or "{}")
    raise AssertionError("the event stream ended")


def _conv(user: str) -> ConversationKey:
    return ConversationKey("support", "web", user, user)
