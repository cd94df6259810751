"""The web chat shows a reply as it is written: partial events on the page's push channel
(only that customer's pages, from any web process), then the final reply in the same
bubble, once. Over HTTP with real SSE streams, and in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, async_playwright, expect

from adapters.webchat import WebChatAdapter, WebChatConfig
from bots.serve import build_app
from core.keys import Keys
from core.messages import IncomingMessage
from tests.desk_stack import Stack, running_stack, serving
from tests.helpers import wait_for
from tests.scripted_models import GatedReplies, ScriptedProvider
from tests.streaming_steps import Writer
from tests.test_desk_browser import ARGS, CHROMIUM, WAIT_MS, say

SECRET = "test-secret-0123456789abcdef"  # the stack's: every web process signs cookies alike


async def queued(stack: Stack, text: str) -> IncomingMessage:
    """The message a page sent, as the engine reads it (without taking it off the stream)."""
    found: list[IncomingMessage] = []

    async def arrived() -> bool:
        entries = await stack.redis.xrange(stack.keys.intake())
        found[:] = [m for _id, f in entries if (m := IncomingMessage.from_json(f["data"])).text == text]
        return bool(found)

    await wait_for(arrived, what=f"{text!r} on the intake stream")
    return found[-1]


def message_of(user: str, ref: str) -> IncomingMessage:
    return IncomingMessage("support", "web", user, user, "where is my order?", meta={"ref": ref})


async def events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, object]]]:
    kind, data = "", ""
    async for line in lines:
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
        elif not line and kind:
            yield kind, json.loads(data or "{}")
            kind, data = "", ""


@pytest.fixture
async def stack(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[Stack]:
    async with running_stack(redis, keys) as s:
        yield s


async def test_partials_reach_only_their_customers_pages_on_any_web_process(stack: Stack) -> None:
    config = WebChatConfig(SECRET, cookie_secure=False)
    other = WebChatAdapter(stack.bus, bot_id="support", personas=stack.personas, config=config)
    async with (
        other,
        serving(stack.app) as url,
        serving(build_app(other, [])) as other_url,
        httpx.AsyncClient(base_url=url, timeout=30) as alice,
        httpx.AsyncClient(base_url=url, timeout=30) as bob,
    ):
        a = (await alice.post("/api/chat", json={"text": "hi", "ref": "a0"})).json()
        b = (await bob.post("/api/chat", json={"text": "hi"})).json()
        assert a["text"].startswith("answer to hi") and {"user", "in_reply_to"} <= a.keys()  # unchanged
        alice.base_url = httpx.URL(other_url)  # Alice's page is served by the other web process
        async with (
            alice.stream("GET", "/api/chat/events") as alice_stream,
            bob.stream("GET", "/api/chat/events") as bob_stream,
        ):
            alice_events, bob_events = events(alice_stream.aiter_lines()), events(bob_stream.aiter_lines())
            assert (await anext(alice_events))[0] == (await anext(bob_events))[0] == "ready"
            writer = Writer(stack.bus, message_of(a["user"], "r1"))
            await writer.partial("Your order")
            await writer.partial("Your order ships today")
            await Writer(stack.bus, message_of(b["user"], "r9")).partial("for bob")
            got = [await asyncio.wait_for(anext(alice_events), 20) for _ in range(2)]
            bob_first = await asyncio.wait_for(anext(bob_events), 20)
    message = writer.message.message_id
    assert got == [
        ("partial", {"in_reply_to": message, "ref": "r1", "seq": 0, "text": "Your order"}),
        ("partial", {"in_reply_to": message, "ref": "r1", "seq": 1, "text": "Your order ships today"}),
    ]
    assert bob_first[0] == "partial" and (bob_first[1]["ref"], bob_first[1]["text"]) == ("r9", "for bob")


@pytest.mark.parametrize("ref", ["", "x" * 65, "has space", "<b>", "ok\n", 5])
async def test_a_bad_ref_is_one_clear_400(stack: Stack, ref: object) -> None:
    async with stack.client() as client:
        r = await client.post("/api/chat", json={"text": "hi", "ref": ref})
    if ref == "":
        assert r.status_code == 200  # no ref: a page that does not stream
    else:
        assert r.status_code == 400 and '"ref"' in r.json()["error"]
        assert await stack.redis.xlen(stack.keys.intake()) == 0


async def test_the_page_shows_the_reply_as_it_is_written_then_the_final_once(
    redis: aioredis.Redis, keys: Keys
) -> None:
    replies = GatedReplies()
    async with (
        running_stack(redis, keys, cookie_secure=True, models=ScriptedProvider(replies=replies)) as stack,
        serving(stack.app) as url,
        async_playwright() as pw,
    ):
        browser: Browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await (await browser.new_context(viewport={"width": 480, "height": 760})).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url + "/")
            await expect(page.locator("#title")).to_have_text("Ava", timeout=WAIT_MS)
            await say(page, "where is my order?")
            writer = Writer(stack.bus, await queued(stack, "where is my order?"))
            assert writer.message.meta["ref"]  # the page named its message
            bubble = page.locator(".msg.bot").last
            await writer.partial("Your order")
            await expect(bubble).to_have_text("Your order", timeout=WAIT_MS)
            await writer.partial("Your order is on its way")
            await expect(bubble).to_have_text("Your order is on its way", timeout=WAIT_MS)
            replies.release()  # the engine finishes the reply: the final replaces the partial
            await expect(bubble).to_contain_text("answer to where is my order?", timeout=WAIT_MS)
            await writer.partial("STALE: a partial after the final")  # must change nothing

            await say(page, "thanks")  # the next reply's partial arrives after the stale one
            second = Writer(stack.bus, await queued(stack, "thanks"))
            await second.partial("You are welcome")
            await expect(page.locator(".msg.bot").last).to_have_text("You are welcome", timeout=WAIT_MS)
            replies.release()
            await expect(page.locator(".msg.bot").last).to_contain_text("answer to thanks", timeout=WAIT_MS)
            texts = await page.locator(".msg.bot").all_inner_texts()
            assert texts[0] == "Hello from Ava" and len(texts) == 3  # greeting + one bubble per reply
            assert texts[1].startswith("answer to where is my order?") and "STALE" not in " ".join(texts)
            assert await page.locator(".msg.typing").count() == 0 and not errors
        finally:
            replies.release(5)  # never leave the engine's worker thread waiting
            await browser.close()
