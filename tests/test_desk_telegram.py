"""An agent answers a Telegram customer through the desk API: the reply goes out through
the Telegram adapter (the real SDK against the emulator), resolving hands the chat back
to the bot, and a second escalation within the reopen window reopens the same ticket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bots.desk.accounts import Role
from tests.desk_stack import Stack, running_stack
from tests.emulators.telegram import TelegramEmulator
from tests.helpers import wait_for
from tests.test_adapter_telegram import TOKEN, make_adapter


@pytest.fixture
async def stack(redis, keys) -> AsyncIterator[Stack]:
    async with running_stack(redis, keys) as s:
        yield s


async def test_agent_reply_reaches_telegram_and_resolve_hands_back(stack: Stack) -> None:
    token = await stack.account("agnes", Role.AGENT)
    auth = {"Authorization": f"Bearer {token}"}
    async with TelegramEmulator() as tg:
        bot = tg.add_bot(TOKEN, "shop_bot")
        async with make_adapter(stack.bus, tg, personas=stack.personas), stack.client() as api:
            bot.dm("[contact_human_agent:0.95] I need a person")
            await wait_for(lambda: bot.sent, timeout=30)
            queue = (await api.get("/api/desk/tickets", params={"platform": "telegram"}, headers=auth)).json()
            (ticket,) = queue["tickets"]
            assert (ticket["status"], ticket["user_id"], ticket["reason"]) == (
                "open",
                "42",
                "asked",
            )  # the customer asked for a person

            r = await api.post(
                f"/api/desk/tickets/{ticket['id']}/reply", json={"text": "Agnes here, on it."}, headers=auth
            )
            assert r.status_code == 200, r.text
            await wait_for(lambda: "Agnes here, on it." in bot.texts(42), timeout=30)

            resolved = await api.post(f"/api/desk/tickets/{ticket['id']}/resolve", headers=auth)
            assert resolved.json()["ticket"]["status"] == "resolved"
            bot.dm("where is my order?")
            await wait_for(
                lambda: any(t.startswith("answer to where is my order?") for t in bot.texts(42)), 30
            )

            bot.dm("[contact_human_agent:0.95] a person again please")
            await wait_for(lambda: len(bot.texts(42)) >= 4, timeout=30)
            again = (await api.get("/api/desk/tickets", params={"status": "open"}, headers=auth)).json()
    assert [t["id"] for t in again["tickets"]] == [ticket["id"]]  # reopened, not a new ticket
    transcript = await stack.tickets.transcript(ticket["id"])
    assert [t.display_name for t in transcript if t.role == "agent"] == ["agnes"]


async def test_what_a_customer_sent_besides_text_is_shown_to_agents(stack: Stack) -> None:
    """A photo and a document reach no model, but the agent sees what they were."""
    token = await stack.account("agnes", Role.AGENT)
    auth = {"Authorization": f"Bearer {token}"}
    async with TelegramEmulator() as tg:
        bot = tg.add_bot(TOKEN, "shop_bot")
        async with make_adapter(stack.bus, tg, personas=stack.personas), stack.client() as api:
            bot.photo()
            await wait_for(lambda: bot.sent, timeout=30)  # "I can only read text"
            bot.dm("/human")
            await wait_for(lambda: len(bot.sent) == 2, timeout=30)
            bot.document("invoice.pdf")
            await wait_for(lambda: len(bot.sent) == 3, timeout=30)  # acknowledged once
            (ticket,) = (await api.get("/api/desk/tickets", headers=auth)).json()["tickets"]
            shown = (await api.get(f"/api/desk/tickets/{ticket['id']}", headers=auth)).json()
    files = [
        (t["text"], a["kind"], a["file_id"], a["summary"])
        for t in shown["transcript"]
        for a in t["attachments"]
    ]
    assert files == [
        ("", "photo", "AgACAgIAAx-large", "photo, 62.5 KB, file id AgACAgIAAx-large"),
        ("", "document", "BQACAgIAAx-doc", "document, invoice.pdf, 47.1 KB, file id BQACAgIAAx-doc"),
    ]
    assert ticket["reason"] == "asked"
