"""The Slack adapter end to end: signed Events API requests into the real bolt app,
the real intake/outbound streams in Redis, and replies out through the real slack_sdk
to a local Slack emulator that records them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from adapters.config import SlackConfig
from adapters.slack import SlackAdapter
from core.bus import Bus
from core.connection import connect
from core.errors import AdapterAuthError, ConfigError
from core.keys import Keys
from core.messages import IncomingMessage
from core.persona import Persona, PersonaStore
from core.retry import Backoff
from core.text import split_message
from tests.emulators.redis_server import PrivateRedis
from tests.emulators.slack import SlackEmulator, event_body, signed_event_request
from tests.fake_engine import FakeEngine, reply_text, running_fake_engine
from tests.helpers import wait_for

SECRET = "test-signing-secret"
FAST = Backoff(first=0.05)
OUTAGE = Backoff(first=0.05, cap=0.5)  # retry often enough to notice Redis is back


@dataclass
class Harness:
    emulator: SlackEmulator
    adapter: SlackAdapter
    http: httpx.AsyncClient
    engine: FakeEngine
    redis: aioredis.Redis
    keys: Keys

    async def post(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        raw, headers = signed_event_request(body, kwargs.pop("secret", SECRET), **kwargs)
        return await self.http.post("/slack/events", content=raw, headers=headers)

    async def queued(self) -> int:
        """Messages the adapter put on the intake stream so far."""
        return int(await self.redis.xlen(self.keys.intake()))

    async def replies_queued(self) -> int:
        return int(await self.redis.xlen(self.keys.outbound("slack", "support")))


@contextlib.asynccontextmanager
async def harness(
    redis: aioredis.Redis, keys: Keys, *, personas: PersonaStore | None = None
) -> AsyncIterator[Harness]:
    async with SlackEmulator() as emulator:
        bus = Bus(redis, keys)
        config = SlackConfig(bot_token=emulator.token, signing_secret=SECRET, api_url=emulator.url)
        adapter = SlackAdapter(bus, config, bot_id="support", personas=personas, backoff=FAST)
        await adapter.start()
        try:
            app = Starlette(routes=adapter.routes())
            transport = httpx.ASGITransport(app=app)
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://slack.test") as http,
                running_fake_engine(bus) as engine,
            ):
                yield Harness(emulator, adapter, http, engine, redis, keys)
        finally:
            await adapter.stop()


@pytest.fixture
async def slack(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[Harness]:
    async with harness(redis, keys) as h:
        yield h


def dm(text: str, *, ts: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": "D0001",
        "channel_type": "im",
        "user": "U0001",
        "text": text,
        "ts": ts or f"{time.time():.6f}",
        **extra,
    }


def channel_message(text: str, ts: str, event_type: str = "message", **extra: Any) -> dict[str, Any]:
    event = {"type": event_type, "channel": "C0001", "user": "U0001", "text": text, "ts": ts, **extra}
    if event_type == "message":
        event["channel_type"] = "channel"
    return event


# -- protocol ------------------------------------------------------------------------------
async def test_url_verification_answers_the_challenge(slack: Harness) -> None:
    response = await slack.post({"token": "x", "challenge": "c-123", "type": "url_verification"})
    assert response.status_code == 200
    assert response.json() == {"challenge": "c-123"}


async def test_bad_signature_and_stale_timestamp_are_rejected(slack: Harness) -> None:
    bad = await slack.post(event_body(dm("forged")), secret="not-the-secret")
    stale = await slack.post(event_body(dm("replayed")), timestamp=int(time.time()) - 6 * 60)
    unsigned = await slack.http.post("/slack/events", json=event_body(dm("unsigned")))
    assert (bad.status_code, stale.status_code, unsigned.status_code) == (401, 401, 401)
    assert await slack.queued() == 0


# -- answering -----------------------------------------------------------------------------
async def test_direct_message_is_answered_in_the_conversation(slack: Harness) -> None:
    response = await slack.post(event_body(dm("hello there")))
    assert response.status_code == 200
    await wait_for(lambda: len(slack.emulator.posted) == 1)
    post = slack.emulator.posted[0]
    assert (post.channel, post.text, post.thread_ts) == ("D0001", "echo: hello there", None)
    assert slack.adapter.bot_user_id == "UBOT"


async def test_mention_is_answered_in_its_thread_and_plain_channel_talk_ignored(slack: Harness) -> None:
    ts = "1700000000.000100"
    # Slack sends both a message.channels event and an app_mention for a mention.
    await slack.post(event_body(channel_message("<@UBOT> where is my order?", ts)))
    await slack.post(event_body(channel_message("<@UBOT> where is my order?", ts, "app_mention")))
    await slack.post(event_body(channel_message("just chatting", "1700000000.000200")))
    await wait_for(lambda: len(slack.emulator.posted) == 1)
    post = slack.emulator.posted[0]
    assert (post.channel, post.text, post.thread_ts) == ("C0001", "echo: where is my order?", ts)
    assert await slack.queued() == 1
    assert [m.text for m in slack.engine.seen] == ["where is my order?"]


async def test_mention_inside_a_thread_replies_to_that_thread(slack: Harness) -> None:
    event = channel_message(
        "<@UBOT> and this?", "1700000000.000900", "app_mention", thread_ts="1700000000.000100"
    )
    await slack.post(event_body(event))
    await wait_for(lambda: len(slack.emulator.posted) == 1)
    assert slack.emulator.posted[0].thread_ts == "1700000000.000100"


async def test_every_channel_message_answered_when_the_persona_says_so(
    redis: aioredis.Redis, keys: Keys
) -> None:
    personas = PersonaStore(redis, keys)
    await personas.put(Persona(bot_id="support", display_name="Support", group_replies="all"))
    async with harness(redis, keys, personas=personas) as h:
        await h.post(event_body(channel_message("no mention here", "1700000000.000300")))
        # a mention still arrives as two events; it must be answered once
        await h.post(event_body(channel_message("<@UBOT> and with one", "1700000000.000400")))
        await h.post(event_body(channel_message("<@UBOT> and with one", "1700000000.000400", "app_mention")))
        await wait_for(lambda: len(h.emulator.posted) == 2)
        assert sorted(p.text for p in h.emulator.posted) == ["echo: and with one", "echo: no mention here"]
        assert await h.queued() == 2


async def test_long_reply_is_split_under_the_limit_between_words(slack: Harness) -> None:
    await slack.post(event_body(dm("LONG answer please")))
    expected = reply_text(IncomingMessage("support", "slack", "D0001", "U0001", "LONG answer please"))
    await wait_for(
        lambda: len(slack.emulator.posted) == len(split_message(expected, SlackAdapter.max_message_chars))
    )
    parts = [p.text for p in slack.emulator.posted]
    assert len(parts) >= 2
    assert all(len(p) <= SlackAdapter.max_message_chars for p in parts)
    assert " ".join(parts).split() == expected.split()  # no word cut, nothing lost or doubled
    assert all(p.thread_ts is None and p.channel == "D0001" for p in slack.emulator.posted)


async def test_rate_limit_then_success_loses_nothing(slack: Harness) -> None:
    slack.emulator.rate_limit_next = 1
    slack.emulator.retry_after = 1
    await slack.post(event_body(dm("first")))
    await wait_for(lambda: len(slack.emulator.posted) == 1)
    assert slack.emulator.rate_limited == 1
    assert slack.adapter.outbox.retries >= 1
    assert [p.text for p in slack.emulator.posted] == ["echo: first"]


async def test_retried_delivery_of_the_same_event_is_answered_once(slack: Harness) -> None:
    body = event_body(dm("only once"))
    first = await slack.post(body)
    retry = await slack.post(body, retry_num=1)
    redelivery = await slack.post(body, retry_num=2)
    assert (first.status_code, retry.status_code, redelivery.status_code) == (200, 200, 200)
    await slack.post(event_body(dm("after")))
    await wait_for(lambda: len(slack.emulator.posted) == 2)
    assert [p.text for p in slack.emulator.posted] == ["echo: only once", "echo: after"]
    assert await slack.queued() == 2


async def test_reply_refused_for_good_is_dropped_and_the_next_is_delivered(slack: Harness) -> None:
    slack.emulator.refuse_next = ["is_archived"]
    await slack.post(event_body(dm("first")))
    await wait_for(lambda: slack.adapter.outbox.dropped == 1, what="the refused reply dropped")
    await slack.post(event_body(dm("second")))
    await wait_for(lambda: len(slack.emulator.posted) == 1, what="the next reply")
    assert [p.text for p in slack.emulator.posted] == ["echo: second"]
    assert slack.adapter.outbox.retries == 0


async def test_event_arriving_while_redis_is_down_is_answered_when_it_returns(
    tmp_path: Any, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.retry")
    server = await PrivateRedis(tmp_path).start()
    client = await connect(server.url, tmp_path)
    bus = Bus(client, keys)
    async with SlackEmulator() as emulator:
        config = SlackConfig(bot_token=emulator.token, signing_secret=SECRET, api_url=emulator.url)
        adapter = SlackAdapter(bus, config, bot_id="support", backoff=OUTAGE)
        await adapter.start()
        try:
            transport = httpx.ASGITransport(app=Starlette(routes=adapter.routes()))
            async with httpx.AsyncClient(transport=transport, base_url="http://slack.test") as http:
                await server.stop()  # Redis goes away; then a customer writes
                raw, headers = signed_event_request(event_body(dm("are you there?")), SECRET)
                posting = asyncio.create_task(http.post("/slack/events", content=raw, headers=headers))
                await wait_for(lambda: "slack intake failed" in caplog.text, what="the event held")
                assert not posting.done()  # no 200 yet: the event is not queued
                await server.start()
                response = await posting
                async with running_fake_engine(bus):
                    await wait_for(lambda: len(emulator.posted) == 1, what="the reply once Redis is back")
        finally:
            await adapter.stop()
            await client.aclose()
            await server.stop()
    assert response.status_code == 200
    assert [p.text for p in emulator.posted] == ["echo: are you there?"]


# -- what is not a customer's text -----------------------------------------------------
async def test_file_without_text_reaches_the_engine_as_an_attachment(slack: Harness) -> None:
    files = [{"id": "F0001", "name": "photo.png", "mimetype": "image/png"}]
    await slack.post(event_body(dm("", subtype="file_share", files=files)))
    await wait_for(lambda: slack.engine.seen)
    (seen,) = slack.engine.seen  # the engine decides what it gets (core.router: text_only)
    assert seen.text == ""
    assert [(a.kind, a.file_id, a.name) for a in seen.attachments] == [("photo", "F0001", "photo.png")]


async def test_bot_messages_edits_and_deletions_are_ignored(slack: Harness) -> None:
    ignored = [
        dm("from another bot", subtype="bot_message", bot_id="B0999", username="other"),
        dm("echo: ours", user="UBOT", bot_id="BBOT"),  # our own reply
        dm("", subtype="message_changed", message={"text": "edited"}),
        dm("", subtype="message_deleted", deleted_ts="1700000000.000100"),
    ]
    for event in ignored:
        assert (await slack.post(event_body(event))).status_code == 200
    assert await slack.queued() == 0
    assert await slack.replies_queued() == 0


# -- credentials and isolation -----------------------------------------------------------
async def test_invalid_token_is_reported_in_one_line(redis: aioredis.Redis, keys: Keys) -> None:
    async with SlackEmulator() as emulator:
        config = SlackConfig(bot_token="xoxb-wrong", signing_secret=SECRET, api_url=emulator.url)
        adapter = SlackAdapter(Bus(redis, keys), config, bot_id="support")
        with pytest.raises(AdapterAuthError) as caught:
            await adapter.start()
    message = str(caught.value)
    assert "SLACK_BOT_TOKEN" in message and "invalid_auth" in message and "\n" not in message
    assert "xoxb-wrong" not in message


def test_missing_settings_are_named() -> None:
    bus: Any = object()
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(bus, SlackConfig(bot_token="xoxb-1"), bot_id="support")


async def test_revoked_token_stops_one_adapter_and_not_another(redis: aioredis.Redis, keys: Keys) -> None:
    other_keys = Keys(namespace=f"test-{uuid.uuid4().hex[:12]}")
    try:
        async with harness(redis, keys) as broken, harness(redis, other_keys) as healthy:
            await broken.post(event_body(dm("before")))
            await wait_for(lambda: len(broken.emulator.posted) == 1)
            broken.emulator.token = "xoxb-rotated"  # our token is revoked while we run
            await broken.post(event_body(dm("hello")))
            await healthy.post(event_body(dm("hello")))
            await wait_for(lambda: broken.adapter.error is not None)
            await wait_for(lambda: len(healthy.emulator.posted) == 1)
            assert "SLACK_BOT_TOKEN" in (broken.adapter.error or "")
            assert not broken.adapter.running and healthy.adapter.running
            assert [p.text for p in broken.emulator.posted] == ["echo: before"]
    finally:
        async for key in redis.scan_iter(match=other_keys.pattern()):
            await redis.delete(key)


# -- Socket Mode ---------------------------------------------------------------------------
async def test_socket_mode_event_is_acknowledged_and_answered(redis: aioredis.Redis, keys: Keys) -> None:
    async with SlackEmulator() as emulator:
        bus = Bus(redis, keys)
        config = SlackConfig(bot_token=emulator.token, app_token=emulator.app_token, api_url=emulator.url)
        adapter = SlackAdapter(bus, config, bot_id="support", backoff=FAST)
        await adapter.start()
        try:
            async with running_fake_engine(bus):
                body = event_body(dm("over the socket"))
                envelope = await emulator.push_event(body)
                await emulator.push_event(body, retry_attempt=1)  # a redelivery
                await wait_for(lambda: envelope in emulator.acks and len(emulator.acks) == 2)
                await wait_for(lambda: len(emulator.posted) == 1)
                await emulator.push_event(event_body(dm("then this")))
                await wait_for(lambda: len(emulator.posted) == 2)
                assert [p.text for p in emulator.posted] == ["echo: over the socket", "echo: then this"]
        finally:
            await adapter.stop()


async def test_bad_app_token_is_reported_in_one_line(redis: aioredis.Redis, keys: Keys) -> None:
    async with SlackEmulator() as emulator:
        config = SlackConfig(bot_token=emulator.token, app_token="xapp-wrong", api_url=emulator.url)
        adapter = SlackAdapter(Bus(redis, keys), config, bot_id="support")
        with pytest.raises(AdapterAuthError, match="SLACK_APP_TOKEN"):
            await adapter.start()
