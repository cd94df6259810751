"""Slack's buttons, slash commands and files end to end: signed requests into the real
bolt app, the real streams and the real engine (scripted models), replies through the
real slack_sdk to the Slack emulator."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapters.markup import to_slack_mrkdwn
from adapters.slack import SlackAdapter, SlackConfig
from core.engine import Engine
from core.history import Turn
from core.keys import Keys
from core.messages import ConversationKey
from core.persona import Messages, Persona, QuickReplies, QuickReplyOption
from core.retry import Backoff
from tests.emulators.slack import (
    SlackEmulator,
    block_actions_body,
    event_body,
    signed_event_request,
    signed_form_request,
    slash_command_body,
)
from tests.helpers import wait_for
from tests.scripted_models import build_engine
from tests.test_adapter_slack import dm

SECRET = "test-signing-secret"
CANCEL = QuickReplyOption(label="Cancel my order", intent="cancel_order")
PERSON = QuickReplyOption(label="Talk to a person", intent="contact_human_agent")
PERSONA = Persona(
    bot_id="support",
    display_name="Ava",
    quick_replies=QuickReplies(rephrase=[PERSON], intents={"track_order": [CANCEL, PERSON]}),
)
DM = ConversationKey("support", "slack", "D0001", "U0001")


@dataclass
class Stack:
    emulator: SlackEmulator
    engine: Engine
    http: httpx.AsyncClient

    async def event(self, event: dict[str, Any]) -> httpx.Response:
        raw, headers = signed_event_request(event_body(event), SECRET)
        return await self.http.post("/slack/events", content=raw, headers=headers)

    async def form(self, fields: dict[str, str], **kw: Any) -> httpx.Response:
        raw, headers = signed_form_request(fields, kw.pop("secret", SECRET), **kw)
        return await self.http.post("/slack/events", content=raw, headers=headers)

    async def click(self, payload: dict[str, Any], **kw: Any) -> httpx.Response:
        return await self.form({"payload": json.dumps(payload)}, **kw)

    async def turns(self) -> list[Turn]:
        return await self.engine.conversations.history.recent(DM, 50)


@pytest.fixture
async def stack(redis: Any, keys: Keys) -> AsyncIterator[Stack]:
    engine = build_engine(redis, keys)
    await engine.personas.put(PERSONA)
    async with SlackEmulator() as emulator:
        config = SlackConfig(bot_token=emulator.token, signing_secret=SECRET, api_url=emulator.url)
        adapter = SlackAdapter(
            engine.bus, config, bot_id="support", personas=engine.personas, backoff=Backoff(first=0.05)
        )
        async with contextlib.AsyncExitStack() as running:
            await running.enter_async_context(engine)
            await running.enter_async_context(adapter)
            transport = httpx.ASGITransport(app=Starlette(routes=adapter.routes()))
            http = await running.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://slack.test")
            )
            yield Stack(emulator, engine, http)


def buttons(blocks: list[dict[str, Any]] | None) -> list[str]:
    return [e["text"]["text"] for b in blocks or [] if b["type"] == "actions" for e in b["elements"]]


async def test_a_click_is_answered_once_even_when_slack_retries_it(stack: Stack) -> None:
    await stack.event(dm("where is my order?"))
    await wait_for(lambda: stack.emulator.posted, what="the answer with buttons")
    answer = stack.emulator.posted[0]
    assert buttons(answer.raw.get("blocks")) == ["Cancel my order", "Talk to a person"]
    assert answer.raw["blocks"][0]["text"]["text"] == to_slack_mrkdwn(answer.text)  # the text above them

    click = block_actions_body(answer, "Cancel my order")
    first = await stack.click(click)
    again = await stack.click(click, retry_num=1)  # the same payload, redelivered
    await stack.event(dm("thanks"))  # a barrier: answered after the redelivery, were it taken
    await wait_for(lambda: len(stack.emulator.posted) == 3, what="the barrier's answer")
    assert (first.status_code, again.status_code) == (200, 200)
    texts = [p.text for p in stack.emulator.posted[1:]]
    assert texts[0].startswith("answer to Cancel my order") and texts[1].startswith("answer to thanks")
    (marked,) = stack.emulator.updated  # the buttons gave way to the choice, once
    assert (marked["channel"], marked["ts"]) == ("D0001", answer.ts)
    assert [b["type"] for b in marked["blocks"]] == ["section", "context"]
    assert marked["blocks"][-1]["elements"][0]["text"] == "✓ Cancel my order"
    chose = [t for t in await stack.turns() if t.role == "user"][1]
    assert (chose.text, chose.intent) == ("Cancel my order", "cancel_order")


async def test_a_forged_click_is_refused(stack: Stack) -> None:
    await stack.event(dm("where is my order?"))
    await wait_for(lambda: stack.emulator.posted)
    click = block_actions_body(stack.emulator.posted[0], "Talk to a person")
    response = await stack.click(click, secret="not-the-secret")
    assert response.status_code == 401
    assert [t.role for t in await stack.turns()] == ["user", "bot"]  # nothing more queued


async def test_slash_command_help_human_and_text(stack: Stack) -> None:
    says = Messages()
    help_ = await stack.form(slash_command_body("/support"))
    await wait_for(lambda: stack.emulator.posted)
    await stack.form(slash_command_body("/support", "where is my order?"))
    await wait_for(lambda: len(stack.emulator.posted) == 2)
    await stack.form(slash_command_body("/support", "human"))
    await wait_for(lambda: len(stack.emulator.posted) == 3)
    ticket = (await stack.engine.tickets.latest_many([DM]))[DM]
    posted = stack.emulator.posted
    assert help_.status_code == 200 and help_.text == ""  # acknowledged, nothing shown by Slack itself
    assert posted[0].text == to_slack_mrkdwn(says.help) and posted[0].channel == "D0001"
    assert posted[1].text.startswith("answer to where is my order?")
    assert posted[2].text == to_slack_mrkdwn(says.handoff)
    assert (ticket.reason, ticket.intent) == ("asked", "contact_human_agent")


async def test_files_are_kept_for_the_team_with_their_permalink(stack: Stack) -> None:
    files = [
        {
            "id": "F0001",
            "name": "broken.png",
            "mimetype": "image/png",
            "size": 20480,
            "url_private": "https://files.slack.com/files-pri/T0001-F0001/broken.png",
            "permalink": "https://emulated.slack.com/files/U0001/F0001/broken.png",
        }
    ]
    await stack.event(dm("", subtype="file_share", files=files))
    await wait_for(lambda: stack.emulator.posted)
    assert stack.emulator.posted[0].text == to_slack_mrkdwn(Messages().text_only)
    user_turn = (await stack.turns())[0]
    (attached,) = user_turn.attachments
    assert (attached.kind, attached.file_id, attached.size, attached.name) == (
        "photo",
        "F0001",
        20480,
        "broken.png",
    )
    assert attached.url == "https://emulated.slack.com/files/U0001/F0001/broken.png"  # not the token-only url
