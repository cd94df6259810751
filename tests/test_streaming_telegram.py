"""Edit-in-place streaming on Telegram: the real python-telegram-bot against the Bot API
emulator (sendMessage, editMessageText with Telegram's own 400s and 429s), the real
Redis streams; the engine's side (partials, then the final reply) written by the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from adapters.config import TelegramConfig
from adapters.markup import to_telegram_html
from adapters.telegram import TelegramAdapter
from core.bus import Bus
from core.keys import Keys
from core.messages import QuickReply
from core.persona import Persona, PersonaStore
from core.retry import Backoff
from core.text import split_message
from tests.emulators.telegram import EmulatedBot, TelegramEmulator
from tests.fake_engine import LONG_PARAGRAPH
from tests.helpers import wait_for
from tests.streaming_steps import Clock, Writer, delivered, next_message, partials_handled

TOKEN, PLAIN_TOKEN = "123456:STREAM-token_abc", "654321:PLAIN-token_xyz"
FINAL = "Your order **A-17** ships *tomorrow* & arrives in < 3 days."
CHAT = 42


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def bus(redis: aioredis.Redis, keys: Keys) -> Bus:
    return Bus(redis, keys)


@pytest.fixture
async def personas(redis: aioredis.Redis, keys: Keys) -> PersonaStore:
    store = PersonaStore(redis, keys)
    await store.put(Persona(bot_id="support", display_name="Shop", stream="edit"))
    await store.put(Persona(bot_id="plain", display_name="Shop"))  # stream: off, the default
    return store


@contextlib.asynccontextmanager
async def running(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore, token: str = TOKEN, bot_id: str = "support"
) -> AsyncIterator[tuple[TelegramAdapter, Clock]]:
    config = TelegramConfig(token=token, api_base_url=tg.base_url, poll_timeout=1, connect_timeout=2)
    adapter = TelegramAdapter(bus, config, bot_id=bot_id, personas=personas, backoff=Backoff(first=0.05))
    clock = Clock()
    assert adapter.streamer is not None
    adapter.streamer.throttle.clock = clock
    async with adapter:
        yield adapter, clock


def edit_statuses(bot: EmulatedBot) -> list[int]:
    return [call.status for call in bot.calls if call.method == "editMessageText"]


async def test_the_customer_sees_one_message_whose_final_text_is_the_plain_reply(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore
) -> None:
    streamed, plain = tg.add_bot(TOKEN), tg.add_bot(PLAIN_TOKEN, "plain_bot")
    async with (
        running(bus, tg, personas) as (adapter, clock),
        running(bus, tg, personas, PLAIN_TOKEN, "plain") as (plain_adapter, _),
    ):
        streamed.dm("where is my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Your order")
        await wait_for(lambda: streamed.visible(CHAT) == [to_telegram_html("Your order")])
        for text in ("Your order **A-17** ships", FINAL):  # the last partial is the whole reply
            clock.advance(2.0)
            await writer.partial(text)
            await partials_handled(adapter, writer.seq)
            assert streamed.visible(CHAT) == [to_telegram_html(text)]
        await writer.final(FINAL)
        await delivered(adapter)

        plain.dm("where is my order?")  # the same reply from a bot whose persona does not stream
        plain_writer = Writer(bus, await next_message(bus))
        for text in ("Your order", FINAL):
            await plain_writer.partial(text)
        await partials_handled(plain_adapter, 2)
        assert plain.sent == []  # stream: off: nothing before the final
        await plain_writer.final(FINAL)
        await delivered(plain_adapter)

    assert streamed.visible(CHAT) == plain.visible(CHAT) == [to_telegram_html(FINAL)]
    assert len(streamed.sent) == 1 and plain.edits == [] and len(plain.sent) == 1
    # The final repeated the last partial: Telegram's "message is not modified" 400 is no error.
    assert edit_statuses(streamed) == [200, 200, 400]
    assert adapter.streamer is not None and adapter.streamer.stats["finals_edited"] == 1


async def test_a_long_final_edits_the_first_part_and_sends_the_rest(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore
) -> None:
    long_reply = "\n\n".join(f"Part {n}. " + LONG_PARAGRAPH * 3 for n in range(1, 25))
    parts = split_message(long_reply, TelegramAdapter.max_message_chars)
    assert len(parts) >= 2
    streamed, plain = tg.add_bot(TOKEN), tg.add_bot(PLAIN_TOKEN, "plain_bot")
    async with (
        running(bus, tg, personas) as (adapter, _clock),
        running(bus, tg, personas, PLAIN_TOKEN, "plain") as (plain_adapter, _),
    ):
        streamed.dm("tell me everything")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Part 1. Thanks")
        await wait_for(lambda: len(streamed.sent) == 1)
        await writer.final(long_reply)
        await delivered(adapter)
        plain.dm("tell me everything")
        await Writer(bus, await next_message(bus)).final(long_reply)
        await delivered(plain_adapter)
    assert streamed.visible(CHAT) == plain.visible(CHAT) == [to_telegram_html(p) for p in parts]
    assert len(streamed.sent) == len(parts) and len(streamed.edits) == 1


async def test_a_final_without_a_streamed_message_is_sent_normally(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore
) -> None:
    bot = tg.add_bot(TOKEN)
    async with running(bus, tg, personas) as (adapter, _clock):
        bot.dm("hi")  # partials lost (or never written): the final alone
        await Writer(bus, await next_message(bus)).final("Hello! How can I help?")
        await delivered(adapter)
        bot.dm("and my order?")  # streamed, but the customer deleted the message meanwhile
        writer = Writer(bus, await next_message(bus))
        await writer.partial("Your order")
        await wait_for(lambda: len(bot.sent) == 2)
        del bot.messages[max(bot.messages)]  # the newest: the streamed one
        await writer.final(FINAL)
        await delivered(adapter, 2)
    assert bot.visible(CHAT) == [to_telegram_html("Hello! How can I help?"), to_telegram_html(FINAL)]
    assert edit_statuses(bot) == [400]  # "message to edit not found": sent anew instead
    assert len(bot.sent) == 3


async def test_edits_are_throttled_to_one_a_second_and_twenty_a_minute(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore
) -> None:
    bot = tg.add_bot(TOKEN)
    async with running(bus, tg, personas) as (adapter, clock):
        bot.dm("where is my order?")
        writer = Writer(bus, await next_message(bus))
        words: list[str] = []
        for second in range(30):  # 30 seconds of a fast model: 10 partials a second
            for _ in range(10):
                words.append(f"w{len(words)}")
                await writer.partial(" ".join(words))
            await partials_handled(adapter, len(words))
            if second == 0:
                assert (len(bot.sent), len(bot.edits)) == (1, 0)  # the first message, then a second's wait
            clock.advance(1.0)
        await writer.final(" ".join(words))
        await delivered(adapter)
    # 1 message + 19 edits fill Telegram's 20 a minute per chat; the 10 more seconds get none.
    assert len(bot.sent) == 1 and len(edit_statuses(bot)) == 19 + 1  # + the final's edit
    assert adapter.streamer is not None and adapter.streamer.stats["throttled"] > 0
    assert bot.visible(CHAT) == [to_telegram_html(" ".join(words))]


async def test_a_429_on_an_edit_pauses_that_chat_for_the_time_telegram_asked(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore
) -> None:
    bot = tg.add_bot(TOKEN)
    async with running(bus, tg, personas) as (adapter, clock):
        bot.dm("where is my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("one")
        await wait_for(lambda: len(bot.sent) == 1)
        bot.rate_limit_next_edit(retry_after=30)
        steps = [
            (2.0, "one two", [429]),  # the edit asked for: 429, retry after 30 s
            (2.0, "one two three", [429]),  # paused: not even tried
            (30.0, "one two three four", [429, 200]),
        ]
        for seconds, text, statuses in steps:
            clock.advance(seconds)
            await writer.partial(text)
            await partials_handled(adapter, writer.seq)
            assert edit_statuses(bot) == statuses
        await writer.final("one two three four five")
        await delivered(adapter)
    assert bot.visible(CHAT) == ["one two three four five"]


async def test_one_message_per_reply_across_processes_and_the_final_from_another(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore
) -> None:
    bot = tg.add_bot(TOKEN)
    async with (
        running(bus, tg, personas) as (first, clock_a),
        running(bus, tg, personas) as (second, clock_b),
    ):
        bot.dm("where is my order?")  # both processes poll; the update is taken once
        writer = Writer(bus, await next_message(bus))
        for text in ("Your", "Your order", "Your order ships"):
            await writer.partial(text)
            await partials_handled(first, writer.seq)
            await partials_handled(second, writer.seq)
            clock_a.advance(2.0)
            clock_b.advance(2.0)
        assert len(bot.sent) == 1 and len(bot.edits) == 2  # one process streamed it, the other did not
        await writer.final(FINAL)
        await wait_for(lambda: first.outbox.delivered + second.outbox.delivered == 1)

        bot.dm("and the refund?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial("The refund")
        await wait_for(lambda: len(bot.sent) == 2)
    # Both processes are gone; the final reaches a third, which finds the message in Redis.
    async with running(bus, tg, personas) as (third, _clock):
        await writer.final("The refund is on its way.")
        await delivered(third)
    assert bot.visible(CHAT) == [to_telegram_html(FINAL), "The refund is on its way."]
    assert len(bot.sent) == 2


async def test_a_streamed_reply_gets_its_buttons_with_the_final_edit(
    bus: Bus, tg: TelegramEmulator, personas: PersonaStore
) -> None:
    streamed = tg.add_bot(TOKEN)
    person = QuickReply("Talk to a person", intent="contact_human_agent")
    async with running(bus, tg, personas) as (adapter, _clock):
        streamed.dm("where is my order?")
        writer = Writer(bus, await next_message(bus))
        await writer.partial(FINAL)
        await wait_for(lambda: len(streamed.sent) == 1)
        await partials_handled(adapter, 1)
        assert streamed.keyboards == {}  # no buttons while it is being written
        await writer.final(FINAL, (person,))  # the same text: only the keyboard changes
        await delivered(adapter)
    assert len(streamed.sent) == 1 and edit_statuses(streamed) == [200]
    (keyboard,) = streamed.keyboards.values()
    assert keyboard["inline_keyboard"] == [
        [{"text": "Talk to a person", "callback_data": "i:contact_human_agent"}]
    ]
