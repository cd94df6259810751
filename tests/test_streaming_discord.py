"""Edit-in-place streaming on Discord: the real discord.py against the Discord emulator
(POST and PATCH /channels/{id}/messages, its 404s and 429s), the real Redis streams; the
engine's side (partials, then the final reply) written by the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from adapters.config import DiscordConfig
from adapters.discord import DiscordAdapter
from adapters.markup import to_discord_markdown
from core.bus import Bus
from core.keys import Keys
from core.persona import Persona, PersonaStore
from core.retry import Backoff
from core.text import split_message
from tests.emulators.discord import CUSTOMER, DiscordEmulator
from tests.fake_engine import LONG_PARAGRAPH
from tests.helpers import wait_for
from tests.streaming_steps import Clock, Writer, delivered, next_message, partials_handled

FINAL = "Your order **A-17** ships *tomorrow*; track it at <https://shop.example/t/A-17>."


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
async def running(
    bus: Bus, personas: PersonaStore, bot_id: str = "support"
) -> AsyncIterator[tuple[DiscordAdapter, DiscordEmulator, Clock]]:
    emulator = await DiscordEmulator().start()
    config = DiscordConfig(
        token=emulator.token, api_base_url=emulator.api_base_url, gateway_url=emulator.gateway_url
    )
    adapter = DiscordAdapter(bus, config, bot_id=bot_id, personas=personas, backoff=Backoff(first=0.05))
    clock = Clock()
    assert adapter.streamer is not None
    adapter.streamer.throttle.clock = clock
    try:
        async with adapter:
            yield adapter, emulator, clock
    finally:
        await emulator.stop()


def channel(emulator: DiscordEmulator) -> int:
    return emulator.dm_channel_id(CUSTOMER)


async def test_one_message_edited_to_exactly_the_plain_reply(bus: Bus, personas: PersonaStore) -> None:
    async with running(bus, personas) as (adapter, emulator, clock):
        asked = await emulator.message_create("where is my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Your order **A-17")  # half-written markdown is shown as text
        await wait_for(lambda: len(emulator.sent) == 1)
        clock.advance(5.0)
        await writer.partial("Your order **A-17** ships")
        await partials_handled(adapter, writer.seq)
        assert emulator.visible(channel(emulator)) == [to_discord_markdown("Your order **A-17** ships")]
        await writer.final(FINAL)
        await delivered(adapter)
        streamed = emulator.visible(channel(emulator))
        first = emulator.sent[0]
    async with running(bus, personas, "plain") as (plain_adapter, plain, _):
        plain_asked = await plain.message_create("where is my order?")
        plain_writer = Writer(bus, await next_message(bus))
        await plain_writer.partial("Your order")
        await partials_handled(plain_adapter, 1)
        assert plain.sent == []  # stream: off
        await plain_writer.final(FINAL)
        await delivered(plain_adapter)
        assert streamed == plain.visible(channel(plain)) == [to_discord_markdown(FINAL)]
        assert plain.edits == [] and len(plain.sent) == 1
        # the streamed message is a reply to the customer's, pinging them once, like the plain one
        assert (first.reference_id, plain.sent[0].reference_id) == (asked, plain_asked)
        assert first.allowed_mentions == plain.sent[0].allowed_mentions
    assert len(emulator.sent) == 1 and len(emulator.edits) == 2


async def test_a_long_final_edits_the_first_part_and_sends_the_rest(bus: Bus, personas: PersonaStore) -> None:
    long_reply = "\n\n".join(f"Part {n}. " + LONG_PARAGRAPH * 2 for n in range(1, 24))
    parts = split_message(long_reply, DiscordAdapter.max_message_chars)
    assert len(parts) >= 3
    async with running(bus, personas) as (adapter, emulator, _clock):
        await emulator.message_create("tell me everything")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Part 1. Thanks")
        await wait_for(lambda: len(emulator.sent) == 1)
        await writer.final(long_reply)
        await delivered(adapter)
    assert emulator.visible(channel(emulator)) == [to_discord_markdown(p) for p in parts]
    assert len(emulator.sent) == len(parts) and len(emulator.edits) == 1


async def test_a_final_whose_streamed_message_is_gone_is_sent_normally(
    bus: Bus, personas: PersonaStore
) -> None:
    async with running(bus, personas) as (adapter, emulator, _clock):
        await emulator.message_create("hi")
        await Writer(bus, await next_message(bus)).final("Hello!")  # no partials at all
        await delivered(adapter)
        await emulator.message_create("and my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Your order")
        await wait_for(lambda: len(emulator.sent) == 2)
        del emulator.messages[list(emulator.messages)[-1]]  # deleted: PATCH answers 404
        await writer.final(FINAL)
        await delivered(adapter, 2)
    assert emulator.visible(channel(emulator)) == [to_discord_markdown("Hello!"), to_discord_markdown(FINAL)]
    assert emulator.edits == [] and len(emulator.sent) == 3
    assert ("PATCH", 404) in {(method, status) for method, _path, status in emulator.requests}


async def test_edits_are_throttled_to_five_per_five_seconds(bus: Bus, personas: PersonaStore) -> None:
    async with running(bus, personas) as (adapter, emulator, clock):
        await emulator.message_create("where is my order?")
        writer = Writer(bus, await next_message(bus))
        words: list[str] = []
        for _window in range(3):  # three 5-second windows, 10 partials in each
            for _ in range(10):
                words.append(f"w{len(words)}")
                await writer.partial(" ".join(words))
                await partials_handled(adapter, writer.seq)
            clock.advance(5.0)
        assert len(emulator.sent) == 1 and len(emulator.edits) == 4 + 5 + 5  # 5 calls per window
        await writer.final(" ".join(words))
        await delivered(adapter)
    assert emulator.visible(channel(emulator)) == [" ".join(words)]


async def test_a_429_on_an_edit_pauses_the_channel(bus: Bus, personas: PersonaStore) -> None:
    async with running(bus, personas) as (adapter, emulator, clock):
        emulator.retry_after = 20.0
        await emulator.message_create("where is my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("one")
        await wait_for(lambda: len(emulator.sent) == 1)
        emulator.rate_limit_next_edit()  # no Via header: discord.py hands the 429 to us
        for seconds, text, edits_tried in [(6.0, "one two", 1), (6.0, "one two three", 1), (20.0, "four", 2)]:
            clock.advance(seconds)
            await writer.partial(text)
            await partials_handled(adapter, writer.seq)
            assert sum(1 for method, _p, _s in emulator.requests if method == "PATCH") == edits_tried
        assert emulator.visible(channel(emulator)) == ["four"]
        await writer.final("four five")
        await delivered(adapter)
    assert emulator.visible(channel(emulator)) == ["four five"]
