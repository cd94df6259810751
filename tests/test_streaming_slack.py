"""Edit-in-place streaming on Slack: signed Events API requests into the real bolt app,
replies through the real slack_sdk to the Slack emulator (chat.postMessage, chat.update,
its errors and 429s), the real Redis streams; the engine's side written by the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from adapters.config import SlackConfig
from adapters.markup import to_slack_mrkdwn
from adapters.slack import SlackAdapter
from core.bus import Bus
from core.keys import Keys
from core.persona import Persona, PersonaStore
from core.retry import Backoff
from core.text import split_message
from tests.emulators.slack import SlackEmulator, event_body, signed_event_request
from tests.fake_engine import LONG_PARAGRAPH
from tests.helpers import wait_for
from tests.streaming_steps import Clock, Writer, delivered, next_message, partials_handled

SECRET = "test-signing-secret"
CHANNEL = "D0001"
FINAL = "Your order **A-17** ships *tomorrow*: see [tracking](https://shop.example/t/A-17)."


@dataclass
class Slack:
    adapter: SlackAdapter
    emulator: SlackEmulator
    clock: Clock
    http: httpx.AsyncClient
    sent: int = 0

    async def dm(self, text: str) -> None:
        """A customer's DM (its ``ts``, the message id replies are tied to, is new each time)."""
        self.sent += 1
        ts = f"1700000000.{self.sent:06d}"
        event = {"type": "message", "channel": CHANNEL, "channel_type": "im", "user": "U0001", "text": text}
        raw, headers = signed_event_request(event_body({**event, "ts": ts}), SECRET)
        assert (await self.http.post("/slack/events", content=raw, headers=headers)).status_code == 200


@pytest.fixture
def bus(redis: aioredis.Redis, keys: Keys) -> Bus:
    return Bus(redis, keys)


@pytest.fixture
async def personas(redis: aioredis.Redis, keys: Keys) -> PersonaStore:
    store = PersonaStore(redis, keys)
    await store.put(Persona(bot_id="support", display_name="Shop", stream="edit"))
    await store.put(Persona(bot_id="plain", display_name="Shop"))
    return store


@contextlib.asynccontextmanager
async def running(bus: Bus, personas: PersonaStore, bot_id: str = "support") -> AsyncIterator[Slack]:
    async with SlackEmulator() as emulator:
        config = SlackConfig(bot_token=emulator.token, signing_secret=SECRET, api_url=emulator.url)
        adapter = SlackAdapter(bus, config, bot_id=bot_id, personas=personas, backoff=Backoff(first=0.05))
        clock = Clock()
        assert adapter.streamer is not None
        adapter.streamer.throttle.clock = clock
        transport = httpx.ASGITransport(app=Starlette(routes=adapter.routes()))
        async with adapter, httpx.AsyncClient(transport=transport, base_url="http://slack.test") as http:
            yield Slack(adapter, emulator, clock, http)


async def test_one_message_updated_to_exactly_the_plain_reply(bus: Bus, personas: PersonaStore) -> None:
    async with running(bus, personas) as slack:
        await slack.dm("where is my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Your order")
        await wait_for(lambda: slack.emulator.visible(CHANNEL) == ["Your order"])
        slack.clock.advance(2.0)
        await writer.partial("Your order **A-17** ships")
        await partials_handled(slack.adapter, writer.seq)
        assert slack.emulator.visible(CHANNEL) == [to_slack_mrkdwn("Your order **A-17** ships")]
        await writer.final(FINAL)
        await delivered(slack.adapter)
        streamed = slack.emulator
    async with running(bus, personas, "plain") as plain:
        await plain.dm("where is my order?")
        plain_writer = Writer(bus, await next_message(bus))
        await plain_writer.partial("Your order")
        await partials_handled(plain.adapter, 1)
        assert plain.emulator.posted == []  # stream: off
        await plain_writer.final(FINAL)
        await delivered(plain.adapter)
    assert streamed.visible(CHANNEL) == plain.emulator.visible(CHANNEL) == [to_slack_mrkdwn(FINAL)]
    assert len(streamed.posted) == 1 and len(streamed.updates) == 2
    assert plain.emulator.updates == [] and "chat.update" not in plain.emulator.calls


async def test_a_long_final_updates_the_first_part_and_posts_the_rest(
    bus: Bus, personas: PersonaStore
) -> None:
    long_reply = "\n\n".join(f"Part {n}. " + LONG_PARAGRAPH * 3 for n in range(1, 25))
    parts = split_message(long_reply, SlackAdapter.max_message_chars)
    assert len(parts) >= 2
    async with running(bus, personas) as slack:
        await slack.dm("tell me everything")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Part 1. Thanks")
        await wait_for(lambda: len(slack.emulator.posted) == 1)
        await writer.final(long_reply)
        await delivered(slack.adapter)
    assert slack.emulator.visible(CHANNEL) == [to_slack_mrkdwn(p) for p in parts]
    assert len(slack.emulator.posted) == len(parts) and len(slack.emulator.updates) == 1


async def test_a_final_whose_streamed_message_is_unknown_is_posted_normally(
    bus: Bus, personas: PersonaStore
) -> None:
    async with running(bus, personas) as slack:
        await slack.dm("hi")
        await Writer(bus, await next_message(bus)).final("Hello!")  # no partials at all
        await delivered(slack.adapter)
        await slack.dm("and my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Your order")
        await wait_for(lambda: len(slack.emulator.posted) == 2)
        del slack.emulator.messages[max(slack.emulator.messages)]  # deleted: message_not_found
        await writer.final(FINAL)
        await delivered(slack.adapter, 2)
    assert slack.emulator.visible(CHANNEL) == ["Hello!", to_slack_mrkdwn(FINAL)]
    assert slack.emulator.updates == [] and slack.emulator.calls.count("chat.update") == 1


async def test_updates_are_throttled_to_one_a_second_and_fifty_a_minute(
    bus: Bus, personas: PersonaStore
) -> None:
    async with running(bus, personas) as slack:
        await slack.dm("where is my order?")
        writer = Writer(bus, await next_message(bus))
        words: list[str] = []
        for _second in range(70):  # 70 seconds of a fast model: 5 partials a second
            for _ in range(5):
                words.append(f"w{len(words)}")
                await writer.partial(" ".join(words))
            await partials_handled(slack.adapter, writer.seq)
            slack.clock.advance(1.0)
        # 1 post + 49 updates fill Tier 3's 50 a minute; after 60 s the window frees up again
        # (t=60..69: the events of t=1..10 leave it one by one).
        assert len(slack.emulator.posted) == 1 and len(slack.emulator.updates) == 49 + 10
        await writer.final(" ".join(words))
        await delivered(slack.adapter)
    assert slack.emulator.visible(CHANNEL) == [" ".join(words)]


async def test_a_429_on_an_update_pauses_for_the_retry_after(bus: Bus, personas: PersonaStore) -> None:
    async with running(bus, personas) as slack:
        slack.emulator.retry_after = 30
        await slack.dm("where is my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("one")
        await wait_for(lambda: len(slack.emulator.posted) == 1)
        slack.emulator.rate_limit_next_update = 1
        for seconds, text, tried in [(2.0, "one two", 1), (2.0, "one two three", 1), (30.0, "four", 2)]:
            slack.clock.advance(seconds)
            await writer.partial(text)
            await partials_handled(slack.adapter, writer.seq)
            assert slack.emulator.calls.count("chat.update") == tried
        await writer.final("four five")
        await delivered(slack.adapter)
    assert slack.emulator.visible(CHANNEL) == ["four five"] and slack.emulator.rate_limited == 1
