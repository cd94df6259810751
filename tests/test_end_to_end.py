"""The whole framework with real (tiny) models: the piped console chat, `chatbot run`
serving the web chat, Telegram, Slack and Discord in one process (each platform an
emulator spoken to by its real SDK), and badly configured platforms reported and left
out while the rest keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bots.cli import app
from bots.config import load_settings
from bots.serve import serve
from core.connection import connect
from core.history import History
from core.keys import Keys
from core.messages import ConversationKey
from core.training.data import BITEXT_CSV, load_examples
from core.training.lm import train_lm
from tests.emulators.discord import DiscordEmulator
from tests.emulators.slack import SlackEmulator, event_body, signed_event_request
from tests.emulators.telegram import TelegramEmulator
from tests.helpers import wait_for
from tests.test_adapter_slack import dm as slack_dm
from tests.test_adapter_telegram import TOKEN
from tests.test_intents import make_model_folder
from tests.test_train_lm import tiny_config


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`intent-default` (MiniLM + a seeded head over the Bitext intents) and `lm-default`
    (a tiny GPT-2 trained for a few seconds): the names the default persona uses."""
    root = tmp_path_factory.mktemp("models")
    labels = sorted({e.intent for e in load_examples(BITEXT_CSV)})
    make_model_folder(
        root / "intent-default", labels, {"oos_method": "none", "threshold": 0.0, "max_length": 32}
    )
    train_lm(tiny_config(root / "lm-default"))
    return root


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, keys: Keys, models_dir: Path, tmp_path: Path
) -> Keys:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHATBOT_NAMESPACE", keys.namespace)
    monkeypatch.setenv("MODELS_DIR", str(models_dir))
    monkeypatch.chdir(tmp_path)
    for var in (
        "TELEGRAM_BOT_TOKEN",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "DISCORD_BOT_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    return keys


def test_piped_console_chat_answers_each_line_and_keeps_history(env: Keys, redis) -> None:
    result = CliRunner().invoke(app, ["chat", "--user", "alice"], input="hi\nwhere is my order?\n")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 2, result.output  # one reply per line read, then exit at end of input
    assert "{{" not in result.output  # no raw slot placeholder reaches the customer

    texts = asyncio.run(_window(env, "console", "alice"))
    assert texts[0::2] == ["hi", "where is my order?"] and len(texts) == 4


async def _window(keys: Keys, platform: str, user: str) -> list[str]:
    settings = load_settings()
    client = await connect(settings.redis_url, Path("var"))
    try:
        history = History(client, keys)
        return [t.text for t in await history.recent(ConversationKey("support", platform, user, user), 10)]
    finally:
        await client.aclose()


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_run_serves_web_chat_and_telegram_while_a_broken_adapter_is_reported(
    env: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with TelegramEmulator() as tg:
        bot = tg.add_bot(TOKEN, "shop_bot")
        port = _free_port()
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("TELEGRAM_API_BASE_URL", tg.base_url)
        monkeypatch.setenv("DISCORD_BOT_TOKEN", "   ")  # set but empty: not configured
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-no-secret")  # neither signing secret nor app token
        settings = load_settings(CHATBOT_PORT=port)
        ready = asyncio.Event()
        server = asyncio.create_task(serve(settings, on_ready=lambda url: ready.set()))
        try:
            await asyncio.wait_for(ready.wait(), 120)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                health = (await client.get("/healthz")).json()["adapters"]
                assert health["telegram"] == "running" and health["web"] == "running"
                assert "SLACK_SIGNING_SECRET" in health["slack"] and "discord" not in health
                reply = (await client.post("/api/chat", json={"text": "I want a refund"})).json()
                assert reply["text"].strip() and reply["route"] in {
                    "generate",
                    "canned",
                    "escalate",
                    "rephrase",
                    "prompt",
                }
                assert "{{" not in reply["text"]
            bot.dm("where is my order?")
            await wait_for(lambda: bool(bot.sent), timeout=60, what="the Telegram reply")
            sent = bot.sent
            assert sent[0]["chat_id"] == 42 and sent[0]["text"].strip()
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server


async def test_run_serves_every_platform_in_one_process(env: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    async with TelegramEmulator() as tg, SlackEmulator() as slack:
        discord = await DiscordEmulator().start()
        try:
            bot = tg.add_bot(TOKEN, "shop_bot")
            port = _free_port()
            for name, value in {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": tg.base_url,
                "SLACK_BOT_TOKEN": slack.token,
                "SLACK_SIGNING_SECRET": "e2e-secret",
                "SLACK_API_URL": slack.url,
                "DISCORD_BOT_TOKEN": discord.token,
                "DISCORD_API_BASE_URL": discord.api_base_url,
                "DISCORD_GATEWAY_URL": discord.gateway_url,
            }.items():
                monkeypatch.setenv(name, value)
            ready = asyncio.Event()
            server = asyncio.create_task(
                serve(load_settings(CHATBOT_PORT=port), on_ready=lambda url: ready.set())
            )
            try:
                await asyncio.wait_for(ready.wait(), 120)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                    health = (await client.get("/healthz")).json()["adapters"]
                    assert health == {
                        "web": "running",
                        "telegram": "running",
                        "slack": "running",
                        "discord": "running",
                    }
                    raw, headers = signed_event_request(
                        event_body(slack_dm("how do I cancel my order?")), "e2e-secret"
                    )
                    assert (
                        await client.post("/slack/events", content=raw, headers=headers)
                    ).status_code == 200
                bot.dm("where is my order?")
                message_id = await discord.message_create("I need a refund")
                await wait_for(
                    lambda: bool(bot.sent and slack.posted and discord.replies_to(message_id)),
                    timeout=90,
                    what="a reply on each platform",
                )
                replies = [
                    bot.sent[0]["text"],
                    slack.posted[0].text,
                    discord.replies_to(message_id)[0].content,
                ]
                assert all(text.strip() and "{{" not in text for text in replies)
                assert slack.posted[0].channel == "D0001"
            finally:
                server.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await server
        finally:
            await discord.stop()


def test_models_list_shows_each_model_with_its_kind_and_headline_metric(env: Keys) -> None:
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line.strip()}
    assert rows["intent-default"][0] == "intent" and rows["lm-default"][0] == "lm"
    assert any(cell.startswith("val_perplexity=") for cell in rows["lm-default"])
