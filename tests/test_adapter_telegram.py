"""The Telegram adapter, driven through the real python-telegram-bot against a local Bot
API emulator, with the real Redis streams and the fake engine in between."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapters.config import TelegramConfig
from adapters.telegram import MAX_UPDATE_BYTES, TelegramAdapter
from core.bus import Bus
from core.connection import connect
from core.errors import AdapterAuthError, ConfigError, DeliveryError
from core.keys import Keys
from core.messages import IncomingMessage
from core.persona import Persona, PersonaStore
from core.retry import Backoff
from tests.emulators.redis_server import PrivateRedis
from tests.emulators.telegram import GROUP_ID, EmulatedBot, TelegramEmulator
from tests.fake_engine import reply_text, running_fake_engine
from tests.helpers import wait_for

TOKEN = "123456:TEST-token_abc"
OTHER_TOKEN = "654321:OTHER-token_xyz"
SECRET = "s3cret_Token-1"


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def bot(tg: TelegramEmulator) -> EmulatedBot:
    return tg.add_bot(TOKEN, "shop_bot")


@pytest.fixture
def bus(redis: Any, keys: Keys) -> Bus:
    return Bus(redis, keys)


def make_adapter(
    bus: Bus, tg: TelegramEmulator, token: str = TOKEN, personas: PersonaStore | None = None, **config: Any
) -> TelegramAdapter:
    cfg = TelegramConfig(
        token=token, api_base_url=tg.base_url, poll_timeout=1, connect_timeout=2, read_timeout=5, **config
    )
    return TelegramAdapter(bus, cfg, bot_id="support", personas=personas, backoff=Backoff(first=0.05))


@contextlib.asynccontextmanager
async def running(bus: Bus, tg: TelegramEmulator, **kw: Any) -> AsyncIterator[TelegramAdapter]:
    async with make_adapter(bus, tg, **kw) as adapter:
        yield adapter  # type: ignore[misc]


async def test_dm_answered_with_escaped_html_and_no_token_in_logs(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_fake_engine(bus) as engine, running(bus, tg):
        bot.dm("1 < 2 & **yes**")
        await wait_for(lambda: bool(bot.sent), what="the reply")
    sent = bot.sent
    assert sent[0]["chat_id"] == 42
    assert sent[0]["text"] == "echo: 1 &lt; 2 &amp; <b>yes</b>"
    assert sent[0]["parse_mode"] == "HTML"
    assert "reply_parameters" not in sent[0]  # DMs are not threaded as replies
    seen = engine.seen[0]
    assert (seen.platform, seen.chat_id, seen.user_id, seen.display_name) == ("telegram", "42", "42", "Ada")
    assert "getUpdates" in {c.method for c in bot.calls}
    assert TOKEN not in caplog.text and "<redacted>" in caplog.text


async def test_typing_indicator_while_the_engine_works(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running(bus, tg):  # no engine: the customer waits, the bot shows "typing"
        bot.dm("hello?")
        await wait_for(lambda: bool(bot.actions), what="a typing action")
    actions = bot.actions
    assert actions[0]["chat_id"] == 42 and actions[0]["action"] == "typing"


async def test_group_answers_mentions_and_replies_only(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running_fake_engine(bus) as engine, running(bus, tg):
        bot.group("thanks everyone")  # no mention: ignored
        bot.group("@other_bot hi")  # someone else's bot: ignored
        asked = bot.group("@shop_bot where is my order?")
        bot.group("ok, and the refund?", reply_to_bot=True)
        await wait_for(lambda: len(bot.sent) >= 2)  # one chat, one ordered lane: a wrongly
    # accepted earlier message would have been answered first
    assert bot.texts(GROUP_ID) == ["echo: where is my order?", "echo: ok, and the refund?"]
    first = bot.sent[0]
    assert first["reply_parameters"]["message_id"] == asked["message"]["message_id"]
    assert [m.text for m in engine.seen] == ["where is my order?", "ok, and the refund?"]
    assert engine.seen[0].meta["chat_type"] == "supergroup"


async def test_group_persona_answering_every_message(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot, redis: Any, keys: Keys
) -> None:
    personas = PersonaStore(redis, keys)
    await personas.put(Persona(bot_id="support", display_name="Shop", group_replies="all"))
    async with running_fake_engine(bus), running(bus, tg, personas=personas):
        bot.group("does anyone know the opening hours?")
        await wait_for(lambda: bot.sent)
    assert bot.texts(GROUP_ID) == ["echo: does anyone know the opening hours?"]


async def test_long_reply_split_under_the_limit_between_words(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    expected = reply_text(IncomingMessage("support", "telegram", "42", "42", "LONG please"))
    async with running_fake_engine(bus), running(bus, tg):
        bot.dm("LONG please")
        await wait_for(lambda: " ".join(bot.texts()).split() == expected.split(), what="every part")
    chunks = bot.texts()
    assert len(chunks) >= 2
    assert all(len(chunk) <= 4096 for chunk in chunks)
    assert " ".join(chunks).split() == expected.split()  # no word was cut in two


async def test_rate_limited_send_is_retried_and_nothing_lost(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    bot.rate_limit_next_send(retry_after=1)
    async with running_fake_engine(bus), running(bus, tg) as adapter:
        bot.dm("hello")
        await wait_for(lambda: bot.sent)
        assert adapter.outbox.retries >= 1
    assert [c.status for c in bot.calls if c.method == "sendMessage"] == [429, 200]
    assert bot.texts() == ["echo: hello"]


async def test_reply_refused_for_good_is_dropped_and_the_next_is_delivered(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running_fake_engine(bus), running(bus, tg) as adapter:
        bot.blocked_by.add(42)  # the customer blocked the bot: Telegram answers 403
        bot.dm("first")
        await wait_for(lambda: adapter.outbox.dropped == 1, what="the refused reply dropped")
        bot.blocked_by.clear()  # and unblocked it again
        bot.dm("second")
        await wait_for(lambda: bool(bot.sent), what="the next reply")
    assert [c.status for c in bot.calls if c.method == "sendMessage"] == [403, 200]
    assert bot.texts() == ["echo: second"] and adapter.outbox.retries == 0


async def test_redelivered_update_answered_once(bus: Bus, tg: TelegramEmulator, bot: EmulatedBot) -> None:
    async with running_fake_engine(bus) as engine, running(bus, tg):
        first = bot.dm("hello")
        bot.push(first)  # Telegram sends the same update_id again
        bot.dm("ping")
        await wait_for(lambda: "echo: ping" in bot.texts())
    assert bot.texts() == ["echo: hello", "echo: ping"]
    assert [m.text for m in engine.seen] == ["hello", "ping"]


async def test_invalid_token_is_one_clear_line(bus: Bus, tg: TelegramEmulator, bot: EmulatedBot) -> None:
    adapter = make_adapter(bus, tg, token="999:wrong-token")
    with pytest.raises(AdapterAuthError) as caught:
        await adapter.start()
    message = str(caught.value)
    assert "TELEGRAM_BOT_TOKEN" in message and "@BotFather" in message
    assert "\n" not in message and "wrong-token" not in message


async def test_bad_settings_and_unreachable_api_are_one_line_errors(bus: Bus) -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        TelegramConfig(token="not a token")
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        TelegramConfig(token=TOKEN, webhook_url="https://bot.example.com/telegram/webhook")
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_URL"):
        TelegramConfig(token=TOKEN, webhook_url="https://bot.example.com", webhook_secret=SECRET)
    nowhere = TelegramConfig(token=TOKEN, api_base_url="http://127.0.0.1:1/bot", connect_timeout=2)
    with pytest.raises(DeliveryError) as caught:
        await TelegramAdapter(bus, nowhere, bot_id="support").start()
    assert "TELEGRAM_API_BASE_URL" in str(caught.value) and TOKEN not in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_sticker_reaches_the_engine_as_an_attachment(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot
) -> None:
    async with running_fake_engine(bus) as engine, running(bus, tg):
        bot.group(
            None,
            sticker={
                "file_id": "x",
                "file_unique_id": "y",
                "type": "regular",
                "width": 1,
                "height": 1,
                "is_animated": False,
                "is_video": False,
            },
        )  # ignored: not addressed to the bot
        bot.sticker()
        bot.group("@shop_bot hi")  # answered after the sticker, were that wrongly accepted
        await wait_for(lambda: len(engine.seen) >= 2)
    sticker, hi = engine.seen  # the engine decides what a sticker gets (core.router: text_only)
    assert (sticker.text, sticker.chat_id) == ("", "42")
    assert [(a.kind, a.file_id) for a in sticker.attachments] == [("sticker", "CAACAgI")]
    assert (hi.text, hi.attachments) == ("hi", ())


async def test_messages_from_bots_ignored(bus: Bus, tg: TelegramEmulator, bot: EmulatedBot) -> None:
    async with running_fake_engine(bus) as engine, running(bus, tg):
        bot.group("@shop_bot beep", user_id=777, is_bot=True)
        bot.group("@shop_bot hi")
        await wait_for(lambda: bot.sent)
    assert bot.texts() == ["echo: hi"]
    assert [m.text for m in engine.seen] == ["hi"]


async def test_rejected_token_stops_only_that_adapter(
    bus: Bus, tg: TelegramEmulator, bot: EmulatedBot, redis: Any
) -> None:
    other = tg.add_bot(OTHER_TOKEN, "other_bot")
    other_keys = Keys(namespace=f"test-{uuid.uuid4().hex[:12]}")
    other_bus = Bus(redis, other_keys)
    try:
        async with running(bus, tg) as good, running(other_bus, tg, token=OTHER_TOKEN) as bad:
            other.dm("help")
            await wait_for(lambda: bool(other.actions))  # submitted; its engine is not running yet
            other.revoked = True  # the token is revoked in @BotFather
            async with running_fake_engine(other_bus), running_fake_engine(bus):
                await wait_for(lambda: bad.error)
                bot.dm("still there?")
                await wait_for(lambda: bot.sent)
            assert "TELEGRAM_BOT_TOKEN" in bad.error and not bad.running
            assert good.running and good.error is None
        assert bot.texts() == ["echo: still there?"]
    finally:
        async for key in redis.scan_iter(match=other_keys.pattern()):
            await redis.delete(key)


async def test_webhook_checks_secret_and_answers(bus: Bus, tg: TelegramEmulator, bot: EmulatedBot) -> None:
    url = "https://bot.example.com/telegram/webhook"
    chat = {"id": 42, "type": "private", "first_name": "Ada"}

    def update(update_id: int, text: str) -> dict[str, Any]:
        return {"update_id": update_id, "message": bot.message(chat, text)}

    async with (
        running_fake_engine(bus) as engine,
        running(bus, tg, webhook_url=url, webhook_secret=SECRET) as adapter,
    ):
        assert bot.webhook["url"] == url and bot.webhook["secret_token"] == SECRET
        assert bot.webhook["allowed_updates"] == ["message", "callback_query"]
        app = Starlette(routes=adapter.routes())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            post = client.post
            header = "X-Telegram-Bot-Api-Secret-Token"
            missing = await post("/telegram/webhook", json=update(901, "intruder"))
            wrong = await post("/telegram/webhook", json=update(902, "intruder"), headers={header: "nope"})
            garbage = await post("/telegram/webhook", content=b"{", headers={header: SECRET})
            not_update = await post(
                "/telegram/webhook", json={"update_id": 1, "message": 5}, headers={header: SECRET}
            )
            huge = b" " * (MAX_UPDATE_BYTES + 1)
            too_big = await post("/telegram/webhook", content=huge, headers={header: SECRET})
            hello = update(903, "hello")
            first = await post("/telegram/webhook", json=hello, headers={header: SECRET})
            again = await post("/telegram/webhook", json=hello, headers={header: SECRET})  # a resend
            await post("/telegram/webhook", json=update(904, "ping"), headers={header: SECRET})
            await wait_for(lambda: "echo: ping" in bot.texts())
    assert (missing.status_code, wrong.status_code, garbage.status_code) == (401, 403, 400)
    assert too_big.status_code == 413  # refused from its Content-Length, never read
    assert not_update.status_code == 400
    assert (first.status_code, again.status_code) == (200, 200)
    assert bot.texts() == ["echo: hello", "echo: ping"]
    assert [m.text for m in engine.seen] == ["hello", "ping"]
    assert "getUpdates" not in {c.method for c in bot.calls}


async def test_webhook_answers_503_while_redis_is_down_and_the_resend_is_answered(
    tg: TelegramEmulator, bot: EmulatedBot, keys: Keys, tmp_path: Any
) -> None:
    url, header = "https://bot.example.com/telegram/webhook", {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    update = {
        "update_id": 77,
        "message": bot.message({"id": 42, "type": "private", "first_name": "Ada"}, "hi"),
    }
    server = await PrivateRedis(tmp_path).start()
    client = await connect(server.url, tmp_path)
    bus = Bus(client, keys)
    try:
        async with running(bus, tg, webhook_url=url, webhook_secret=SECRET) as adapter:
            app = Starlette(routes=adapter.routes())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                await server.stop()
                down = await http.post("/telegram/webhook", json=update, headers=header)
                await server.start()
                again = await http.post("/telegram/webhook", json=update, headers=header)  # Telegram resends
                async with running_fake_engine(bus):
                    await wait_for(lambda: bool(bot.sent), what="the reply once Redis is back")
        assert (down.status_code, again.status_code) == (503, 200)
        assert bot.texts() == ["echo: hi"]
    finally:
        await client.aclose()
        await server.stop()


async def test_polled_update_is_held_while_redis_is_down(
    tg: TelegramEmulator, bot: EmulatedBot, keys: Keys, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.retry")
    server = await PrivateRedis(tmp_path).start()
    client = await connect(server.url, tmp_path)
    bus = Bus(client, keys)
    try:
        async with running(bus, tg):
            await server.stop()
            bot.dm("still there?")  # fetched by getUpdates, then held until Redis is back
            await wait_for(lambda: "telegram intake failed" in caplog.text, what="the update held")
            await server.start()
            async with running_fake_engine(bus):
                await wait_for(lambda: bool(bot.sent), what="the reply once Redis is back")
        assert bot.texts() == ["echo: still there?"]
    finally:
        await client.aclose()
        await server.stop()
