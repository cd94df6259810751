"""The Discord adapter, end to end: the real discord.py talks to a local Discord emulator
(REST + gateway), messages go through the real Redis streams to a fake engine, and the
replies are checked where discord.py delivered them (the emulator's record)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import adapters.discord as discord_adapter
from adapters.base import PlatformAdapter
from adapters.config import DiscordConfig
from adapters.discord import DiscordAdapter, reply_nonce
from adapters.discord_events import strip_mention
from core.bus import DELIVERY_GROUP, Bus
from core.connection import connect
from core.errors import AdapterAuthError
from core.keys import Keys
from core.messages import IncomingMessage, Reply, Route
from core.persona import Persona, PersonaStore
from core.retry import Backoff
from tests.emulators.discord import (
    BOT_ID,
    CUSTOMER,
    GUILD_CHANNEL_ID,
    GUILD_ID,
    MESSAGE_CONTENT,
    OTHER_BOT,
    OTHER_CUSTOMER,
    DiscordEmulator,
)
from tests.emulators.redis_server import PrivateRedis
from tests.fake_engine import FakeEngine, reply_text, running_fake_engine
from tests.helpers import wait_for

FAST = Backoff(first=0.05)
OUTAGE = Backoff(first=0.05, cap=0.5)  # retry often enough to notice Redis is back


def config_for(emulator: DiscordEmulator, token: str | None = None) -> DiscordConfig:
    return DiscordConfig(
        token=token or emulator.token, api_base_url=emulator.api_base_url, gateway_url=emulator.gateway_url
    )


@contextlib.asynccontextmanager
async def running(
    bus: Bus, emulator: DiscordEmulator, personas: PersonaStore | None = None
) -> AsyncIterator[tuple[DiscordAdapter, FakeEngine]]:
    adapter = DiscordAdapter(bus, config_for(emulator), bot_id="support", personas=personas, backoff=FAST)
    async with running_fake_engine(bus) as engine:
        await adapter.start()
        try:
            yield adapter, engine
        finally:
            await adapter.stop()


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    emu = await DiscordEmulator().start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def discord_bot(
    redis: aioredis.Redis, keys: Keys, emulator: DiscordEmulator
) -> AsyncIterator[tuple[DiscordAdapter, FakeEngine]]:
    async with running(Bus(redis, keys), emulator) as pair:
        yield pair


async def barrier(emulator: DiscordEmulator) -> str:
    """A DM that is answered: once its reply is out, every earlier event was handled."""
    message_id = await emulator.message_create("barrier", author=OTHER_CUSTOMER)
    await wait_for(lambda: emulator.replies_to(message_id), what="barrier reply")
    return message_id


def test_the_sdk_is_imported_not_our_module() -> None:
    sdk = discord_adapter.discord
    assert sdk.__name__ == "discord" and sdk is not discord_adapter
    assert sdk.__version__ == importlib.metadata.version("discord.py")  # the installed distribution
    assert issubclass(discord_adapter.DiscordAdapter, PlatformAdapter)
    assert issubclass(discord_adapter._Client, sdk.Client) and sdk.Client.__module__ == "discord.client"


def test_strip_mention_both_forms() -> None:
    assert strip_mention(f"<@{BOT_ID}> where is my order?", BOT_ID) == "where is my order?"
    assert strip_mention(f"hey <@!{BOT_ID}>, refund please", BOT_ID) == "hey , refund please"
    assert strip_mention("<@123> hi", BOT_ID) == "<@123> hi"


async def test_direct_message_answered_as_a_reply(discord_bot, emulator: DiscordEmulator) -> None:
    _adapter, engine = discord_bot
    message_id = await emulator.message_create("where is my order?")
    await wait_for(lambda: emulator.replies_to(message_id), what="reply to the DM")
    (reply,) = emulator.replies_to(message_id)
    assert reply.content == "echo: where is my order?"
    assert reply.channel_id == str(emulator.dm_channel_id(CUSTOMER))
    assert reply.allowed_mentions == {"parse": [], "replied_user": True}  # no @everyone/role pings
    assert str(emulator.dm_channel_id(CUSTOMER)) in emulator.typing  # typing shown while it worked
    (seen,) = engine.seen
    assert (seen.platform, seen.user_id, seen.message_id) == ("discord", CUSTOMER["id"], message_id)


async def test_mention_in_guild_answered_without_the_mention(discord_bot, emulator: DiscordEmulator) -> None:
    _adapter, engine = discord_bot
    first = await emulator.message_create(f"<@{BOT_ID}> can I get a refund?", guild=True, mention_bot=True)
    second = await emulator.message_create(f"<@!{BOT_ID}> and my invoice?", guild=True, mention_bot=True)
    await wait_for(lambda: emulator.replies_to(first) and emulator.replies_to(second), what="guild replies")
    assert emulator.replies_to(first)[0].content == "echo: can I get a refund?"
    assert emulator.replies_to(second)[0].content == "echo: and my invoice?"
    assert emulator.replies_to(first)[0].channel_id == str(GUILD_CHANNEL_ID)
    assert {m.meta["guild_id"] for m in engine.seen} == {str(GUILD_ID)}


async def test_guild_message_without_mention_ignored(discord_bot, emulator: DiscordEmulator) -> None:
    adapter, engine = discord_bot
    ignored = await emulator.message_create("just chatting with friends", guild=True)
    await barrier(emulator)
    assert emulator.replies_to(ignored) == []
    assert "just chatting with friends" not in [m.text for m in engine.seen]
    assert adapter.stats["ignored"] == 1


async def test_persona_answering_every_group_message(redis, keys, emulator: DiscordEmulator) -> None:
    personas = PersonaStore(redis, keys)
    await personas.put(Persona(bot_id="support", display_name="Support", group_replies="all"))
    async with running(Bus(redis, keys), emulator, personas):
        message_id = await emulator.message_create("anyone know the opening hours?", guild=True)
        await wait_for(lambda: emulator.replies_to(message_id), what="reply without a mention")
        assert emulator.replies_to(message_id)[0].content == "echo: anyone know the opening hours?"


async def test_long_reply_split_under_2000_never_inside_a_word(
    discord_bot, emulator: DiscordEmulator
) -> None:
    message_id = await emulator.message_create("LONG answer please")
    expected = reply_text(IncomingMessage("support", "discord", "c", "u", "LONG answer please"))
    done = lambda: " ".join(m.content for m in emulator.replies_to(message_id)).split() == expected.split()  # noqa: E731
    await wait_for(done, what="every part of the long reply")
    parts = [m.content for m in emulator.replies_to(message_id)]
    assert len(parts) >= 3 and all(len(p) <= 2000 for p in parts)
    words = set(expected.split())
    for part in parts:  # each cut is at a word boundary: a part begins and ends with whole words
        assert part.split()[0] in words and part.split()[-1] in words
    mentions = [m.allowed_mentions.get("replied_user", False) for m in emulator.replies_to(message_id)]
    assert mentions == [True] + [False] * (len(parts) - 1)  # the customer is pinged once


async def test_429_then_success_nothing_lost(discord_bot, emulator: DiscordEmulator) -> None:
    emulator.rate_limit_next(1)  # a genuine Discord 429: discord.py waits retry_after and retries
    first = await emulator.message_create("first question")
    second = await emulator.message_create("second question", author=OTHER_CUSTOMER)
    await wait_for(lambda: emulator.replies_to(first) and emulator.replies_to(second), what="both replies")
    await barrier(emulator)
    assert emulator.rate_limited == 1
    assert [m.content for m in emulator.replies_to(first)] == ["echo: first question"]
    assert [m.content for m in emulator.replies_to(second)] == ["echo: second question"]


async def test_429_the_sdk_gives_up_on_is_retried_by_the_outbox(
    discord_bot, emulator: DiscordEmulator
) -> None:
    adapter, _ = discord_bot
    emulator.rate_limit_next(1, via=False)  # no Via header: discord.py raises HTTPException(429)
    message_id = await emulator.message_create("are you there?")
    await wait_for(lambda: emulator.replies_to(message_id), what="reply after the 429")
    assert emulator.rate_limited == 1
    assert adapter.outbox.retries == 1
    assert [m.content for m in emulator.replies_to(message_id)] == ["echo: are you there?"]


async def test_reply_refused_for_good_is_dropped_and_the_next_is_delivered(
    discord_bot, emulator: DiscordEmulator
) -> None:
    adapter, _ = discord_bot
    emulator.forbid_next = 1  # 403 Missing Permissions: retrying cannot help
    refused = await emulator.message_create("first question")
    await wait_for(lambda: adapter.outbox.dropped == 1, what="the refused reply dropped")
    answered = await emulator.message_create("second question")  # same chat, same lane
    await wait_for(lambda: emulator.replies_to(answered), what="the next reply")
    assert emulator.replies_to(refused) == [] and adapter.outbox.retries == 0
    assert [m.content for m in emulator.replies_to(answered)] == ["echo: second question"]


async def test_message_arriving_while_redis_is_down_is_answered_when_it_returns(
    tmp_path: Path, keys: Keys, emulator: DiscordEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.retry")
    server = await PrivateRedis(tmp_path).start()
    client = await connect(server.url, tmp_path)
    bus = Bus(client, keys)
    adapter = DiscordAdapter(bus, config_for(emulator), bot_id="support", backoff=OUTAGE)
    await adapter.start()
    try:
        await server.stop()  # Redis goes away; then a customer writes
        message_id = await emulator.message_create("are you there?")
        await wait_for(lambda: "discord intake failed" in caplog.text, what="the message held")
        await server.start()
        async with running_fake_engine(bus):
            await wait_for(lambda: emulator.replies_to(message_id), what="the reply once Redis is back")
        assert adapter.running and adapter.stats["submitted"] == 1
    finally:
        await adapter.stop()
        await client.aclose()
        await server.stop()
    assert [m.content for m in emulator.replies_to(message_id)] == ["echo: are you there?"]


async def test_duplicate_message_create_answered_once(discord_bot, emulator: DiscordEmulator) -> None:
    adapter, engine = discord_bot
    message_id = await emulator.message_create("cancel my order")
    await emulator.message_create("cancel my order", message_id=message_id)
    await wait_for(lambda: adapter.stats["duplicates"] == 1, what="the duplicate to be seen")
    await barrier(emulator)
    assert len(emulator.replies_to(message_id)) == 1
    assert [m.message_id for m in engine.seen].count(message_id) == 1


async def test_redelivery_after_resume_answered_once(discord_bot, emulator: DiscordEmulator) -> None:
    adapter, _ = discord_bot
    message_id = await emulator.message_create("track my parcel")
    await wait_for(lambda: emulator.replies_to(message_id), what="first reply")
    await emulator.request_reconnect()  # discord.py RESUMEs; the emulator replays the last event
    await wait_for(lambda: emulator.resumes == 1 and adapter.stats["duplicates"] == 1, what="resume + replay")
    await barrier(emulator)
    assert emulator.identifies == 1
    assert len(emulator.replies_to(message_id)) == 1


async def test_invalid_token_reported_in_one_line(redis, keys, emulator: DiscordEmulator) -> None:
    adapter = DiscordAdapter(Bus(redis, keys), config_for(emulator, token="not-the-token"), bot_id="support")
    with pytest.raises(AdapterAuthError) as caught:
        await adapter.start()
    line = str(caught.value)
    assert "DISCORD_BOT_TOKEN" in line and "401" in line and "\n" not in line
    assert "not-the-token" not in line and "not-the-token" not in repr(adapter.config)


async def test_message_content_intent_requested_and_refusal_explained(
    redis, keys, emulator: DiscordEmulator
) -> None:
    emulator.message_content_enabled = False  # the privileged switch is off in the portal
    adapter = DiscordAdapter(Bus(redis, keys), config_for(emulator), bot_id="support")
    with pytest.raises(AdapterAuthError) as caught:
        await adapter.start()
    assert emulator.intents is not None and emulator.intents & MESSAGE_CONTENT
    assert "MESSAGE CONTENT intent" in str(caught.value) and "\n" not in str(caught.value)
    assert adapter.error == str(caught.value)


async def test_messages_from_bots_edits_and_self_ignored(discord_bot, emulator: DiscordEmulator) -> None:
    adapter, _engine = discord_bot
    other_bot = await emulator.message_create(
        f"<@{BOT_ID}> ping", author=OTHER_BOT, guild=True, mention_bot=True
    )
    itself = await emulator.message_create("echo: hello", author=emulator.bot_user)
    edited = await emulator.message_create("hello")
    await wait_for(lambda: emulator.replies_to(edited), what="reply to the original")
    await emulator.message_update(edited, "hello, edited")
    await barrier(emulator)
    assert emulator.replies_to(other_bot) == [] and emulator.replies_to(itself) == []
    assert len(emulator.replies_to(edited)) == 1
    assert adapter.stats["ignored"] == 2


async def test_attachment_or_sticker_without_text_reaches_the_engine(
    discord_bot, emulator: DiscordEmulator
) -> None:
    _adapter, engine = discord_bot
    photo = await emulator.message_create("", attachments=1)
    sticker = await emulator.message_create(f"<@{BOT_ID}>", guild=True, mention_bot=True, stickers=1)
    await wait_for(lambda: len(engine.seen) == 2, what="both at the engine")
    by_id = {m.message_id: m for m in engine.seen}  # the engine decides (core.router: text_only)
    (image,) = by_id[photo].attachments
    assert by_id[photo].text == "" and (image.kind, image.size, image.mime) == ("photo", 2048, "image/png")
    assert image.url.startswith("https://cdn.discordapp.com/attachments/") and image.name == "photo0.png"
    assert [(a.kind, a.name) for a in by_id[sticker].attachments] == [("sticker", "wave")]


async def test_revoked_token_stops_only_that_adapter(redis, keys, emulator: DiscordEmulator) -> None:
    other_keys = Keys(namespace=f"test-{uuid.uuid4().hex[:12]}")
    other_emulator = await DiscordEmulator(token="second-bot-token").start()
    bus, other_bus = Bus(redis, keys), Bus(redis, other_keys)
    try:
        async with running(bus, emulator) as (broken, _), running(other_bus, other_emulator) as (healthy, _):
            emulator.revoked = True  # the token is reset in the portal while we run
            lost = await emulator.message_create("hello?")
            await wait_for(lambda: broken.error is not None, what="the broken adapter to stop")
            answered = await other_emulator.message_create("hello?")
            await wait_for(lambda: other_emulator.replies_to(answered), what="the healthy adapter's reply")
            assert "DISCORD_BOT_TOKEN" in broken.error and not broken.running
            assert healthy.running and healthy.error is None
            assert emulator.replies_to(lost) == []
            # nothing lost: the undelivered reply stays pending for the next start
            assert await bus.pending_count(keys.outbound("discord", "support"), DELIVERY_GROUP) == 1
    finally:
        await other_emulator.stop()
        async for key in redis.scan_iter(match=other_keys.pattern(), count=500):
            await redis.delete(key)


async def test_a_part_sent_twice_with_its_nonce_is_one_message(
    discord_bot, emulator: DiscordEmulator
) -> None:
    adapter, _ = discord_bot
    await barrier(emulator)  # connected, and the barrier's reply is recorded
    before = len(emulator.sent)
    reply = Reply("support", "discord", str(GUILD_CHANNEL_ID), "u1", "hello", Route.GENERATE)
    await adapter.send_text(reply, "hello", 0)
    await adapter.send_text(reply, "hello", 0)  # a retry after a timeout, here or in another process
    assert len(emulator.sent) == before + 1 and emulator.nonce_repeats == 1
    assert (
        emulator.sent[-1].body["nonce"] == reply_nonce(reply, 0) and emulator.sent[-1].body["enforce_nonce"]
    )
    await adapter.send_text(reply, "world", 1)  # the next part has its own nonce
    assert len(emulator.sent) == before + 2
    later = emulator.clock() + emulator.nonce_window + 1
    emulator.clock = lambda: later  # past Discord's window the nonce is no longer checked
    await adapter.send_text(reply, "hello", 0)
    assert len(emulator.sent) == before + 3 and emulator.nonce_repeats == 1


def test_nonces_are_stable_distinct_and_short() -> None:
    reply = Reply("support", "discord", "1", "u1", "hi", Route.GENERATE)
    assert reply_nonce(reply, 0) == reply_nonce(Reply.from_json(reply.to_json()), 0)
    assert reply_nonce(reply, 0) != reply_nonce(reply, 1)
    assert len(reply_nonce(reply, 0)) <= 25  # Discord's limit
