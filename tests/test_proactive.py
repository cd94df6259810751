"""Proactive messages (core.proactive): which conversation, once per request id, the
delivery's outcome, and the admin API (real Redis; the web chat as `chatbot run` composes
it). `chatbot send` through the Telegram emulator is in tests/test_multibot.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.failures import explain_refusal
from bots.desk.accounts import Role
from core.bus import Bus
from core.delivery import Outbox
from core.errors import BotUnavailable, ConversationNotFound, PermanentDeliveryError
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey, Reply, Route
from core.persona import Persona, PersonaStore
from core.proactive import Proactive
from core.retry import Backoff
from tests.desk_stack import Stack, running_stack
from tests.helpers import wait_for


@pytest.fixture
async def proactive(redis: Any, keys: Keys) -> Proactive:
    personas = PersonaStore(redis, keys)
    await personas.put(Persona(bot_id="support", display_name="Ava"))
    await personas.put(Persona(bot_id="quiet", display_name="Q", platforms=["web"]))
    return Proactive(redis, keys, Bus(redis, keys), History(redis, keys), personas)


async def talked(p: Proactive, platform: str, chat: str, user: str, bot: str = "support") -> ConversationKey:
    conv = ConversationKey(bot, platform, chat, user)
    await p.history.append_turns(conv, [Turn(role="user", text="hi")])
    return conv


async def reading(p: Proactive, platform: str, bot: str = "support") -> None:
    """A delivery consumer that has just read the stream: what a running adapter looks like."""
    await p.bus.read_outbound(platform, bot, "adapter-1", block_ms=1)


def test_history_keys_give_their_conversation_back(keys: Keys) -> None:
    conv = ConversationKey("support", "slack", "C1:x%", "U:1")
    assert keys.conversation_of(keys.history(conv)) == conv
    assert keys.conversation_of(keys.handoff(conv)) is None


async def test_the_direct_chat_is_chosen_and_several_group_chats_need_a_name(proactive: Proactive) -> None:
    await talked(proactive, "telegram", "-100", "42")
    direct = await talked(proactive, "telegram", "42", "42")
    await talked(proactive, "telegram", "42", "42", bot="other")  # another bot's: never chosen
    await reading(proactive, "telegram")
    sent = await proactive.send("support", "telegram", "42", "Your order has shipped.")
    assert sent.conversation == direct
    await talked(proactive, "slack", "C1", "U1")
    await talked(proactive, "slack", "C2", "U1")
    with pytest.raises(ConversationNotFound, match=r"several chats \(C1, C2\); name one with --chat"):
        await proactive.send("support", "slack", "U1", "hello")
    await reading(proactive, "slack")
    assert (
        await proactive.send("support", "slack", "U1", "hello", chat_id="C2")
    ).conversation.chat_id == "C2"
    with pytest.raises(ConversationNotFound, match="no conversation in chat 'C9'"):
        await proactive.send("support", "slack", "U1", "hello", chat_id="C9")


async def test_strangers_disabled_bots_and_stopped_adapters_are_one_line(proactive: Proactive) -> None:
    with pytest.raises(ConversationNotFound, match="can only write to customers who wrote to it first"):
        await proactive.send("support", "telegram", "7", "hello")
    with pytest.raises(BotUnavailable, match="bot 'quiet' does not serve telegram"):
        await proactive.send("quiet", "telegram", "7", "hello")
    with pytest.raises(BotUnavailable, match="unknown bot 'ghost'"):
        await proactive.send("ghost", "web", "7", "hello")
    with pytest.raises(BotUnavailable, match="console cannot take proactive messages"):
        await proactive.send("support", "console", "7", "hello")
    with pytest.raises(ValueError, match="empty"):
        await proactive.send("support", "web", "7", "  ")
    await talked(proactive, "web", "w1", "w1")
    with pytest.raises(BotUnavailable, match="no running process delivers web messages"):
        await proactive.send("support", "web", "w1", "hello")
    assert await proactive.redis.xlen(proactive.keys.outbound("web", "support")) == 0  # nothing sent


async def test_one_request_id_sends_once_even_when_retried_at_the_same_time(proactive: Proactive) -> None:
    conv = await talked(proactive, "web", "w1", "w1")
    await reading(proactive, "web")
    sends = [proactive.send("support", "web", "w1", "Shipped!", request_id="order-9") for _ in range(5)]
    results = await asyncio.gather(*sends)
    assert len({r.reply_id for r in results}) == 1 and sum(not r.repeated for r in results) == 1
    assert await proactive.redis.xlen(proactive.keys.outbound("web", "support")) == 1
    turns = await proactive.history.recent(conv)
    assert [(t.role, t.route, t.text) for t in turns] == [
        ("user", "", "hi"),
        ("bot", "proactive", "Shipped!"),
    ]


async def test_the_outbox_records_what_became_of_a_proactive_message(proactive: Proactive) -> None:
    await talked(proactive, "telegram", "42", "42")
    await talked(proactive, "telegram", "43", "43")
    refused = {"43"}

    async def deliver(reply: Reply) -> None:  # the platform's edge: user 43 blocked the bot
        if reply.chat_id in refused:
            detail = "Telegram refused it: Forbidden: bot was blocked by the user"
            raise PermanentDeliveryError(explain_refusal("telegram", detail))

    outbox = Outbox(proactive.bus, "telegram", "support", deliver, backoff=Backoff(first=0.01, cap=0.05))
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    try:
        await wait_for(lambda: _live(proactive), what="the outbox reading")
        ok = await proactive.send("support", "telegram", "42", "Shipped")
        blocked = await proactive.send("support", "telegram", "43", "Shipped")
        plain = Reply("support", "telegram", "42", "42", "an answer", Route.GENERATE)
        await proactive.bus.publish_reply(plain)
        await wait_for(lambda: _outcome(proactive, blocked.reply_id), what="the refusal recorded")
        await wait_for(lambda: _outcome(proactive, ok.reply_id), what="the delivery recorded")
        assert (await proactive.outcome(ok.reply_id) or {})["status"] == "delivered"
        outcome = await proactive.outcome(blocked.reply_id) or {}
        assert outcome["status"] == "refused" and "(the user blocked the bot)" in outcome["detail"]
        await wait_for(lambda: outbox.delivered == 2, what="the plain reply")
        assert await proactive.outcome(plain.reply_id) is None  # only proactive messages are tracked
    finally:
        stop.set()
        await task


async def _live(p: Proactive) -> bool:
    return bool(await p.bus.live_consumers(p.keys.outbound("telegram", "support"), "delivery", 5000))


async def _outcome(p: Proactive, reply_id: str) -> bool:
    return await p.outcome(reply_id) is not None


@pytest.fixture
async def stack(redis: Any, keys: Keys) -> AsyncIterator[Stack]:
    async with running_stack(redis, keys) as s:
        yield s


async def test_the_admin_api_sends_to_a_known_web_customer(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {await stack.account('boss', Role.ADMIN)}"}
    agent = {"Authorization": f"Bearer {await stack.account('amy')}"}
    async with stack.client() as client:
        customer = (await client.post("/api/chat", json={"text": "where is my order?"})).json()["user"]
        body = {"platform": "web", "user": customer, "text": "Your order has shipped.", "id": "order-1"}
        assert (await client.post("/api/admin/messages", json=body)).status_code == 401
        assert (await client.post("/api/admin/messages", json=body, headers=agent)).status_code == 403
        sent = await client.post("/api/admin/messages", json=body, headers=admin)
        assert sent.status_code == 202, sent.text
        assert sent.json()["status"] == "queued" and sent.json()["chat"] == customer
        reply_id = sent.json()["reply_id"]

        async def delivered() -> bool:
            r = await client.get(f"/api/admin/messages/{reply_id}", headers=admin)
            return bool(r.json()["status"] == "delivered")

        await wait_for(delivered, what="the delivery")
        again = await client.post("/api/admin/messages", json=body, headers=admin)
        assert again.status_code == 200 and again.json() == {**sent.json(), "status": "repeated"}
        turns = (await client.get("/api/chat/history")).json()["turns"]
        assert [t["text"] for t in turns if t["role"] == "bot"][-1] == "Your order has shipped."
        assert sum(t["text"] == "Your order has shipped." for t in turns) == 1

        for change, status, says in (
            ({"user": "web-nobody"}, 404, "no conversation with web user 'web-nobody'"),
            ({"bot": "ghost"}, 409, "unknown bot 'ghost'"),
            ({"text": ""}, 400, '"text"'),
            ({"platform": "console"}, 409, "console cannot take proactive messages"),
        ):
            r = await client.post("/api/admin/messages", json={**body, "id": None, **change}, headers=admin)
            assert r.status_code == status and says in r.json()["error"], r.text
    entries = await stack.desk.audit.recent(10)
    assert [e.action for e in entries].count("message.send") == 1
