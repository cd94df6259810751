"""Which adapters `chatbot run` builds from the settings, and how bad settings are told."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from adapters.telegram import TelegramAdapter
from bots.config import Settings
from bots.platforms import configured_adapters
from core.bus import Bus
from core.keys import Keys
from core.persona import PersonaStore

UNSET = dict(
    TELEGRAM_BOT_TOKEN=None,
    SLACK_BOT_TOKEN=None,
    SLACK_SIGNING_SECRET=None,
    SLACK_APP_TOKEN=None,
    DISCORD_BOT_TOKEN=None,
    TELEGRAM_WEBHOOK_URL=None,
    TELEGRAM_WEBHOOK_SECRET=None,
)


def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, **env: str) -> Settings:
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    for name, value in (UNSET | env).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture
def parts(redis: Any, keys: Keys) -> tuple[Bus, PersonaStore]:
    return Bus(redis, keys), PersonaStore(redis, keys)


def test_nothing_configured_means_no_adapters(monkeypatch, tmp_path, parts) -> None:
    got = configured_adapters(settings(monkeypatch, tmp_path), *parts)
    assert got.adapters == [] and got.failed == {}


def test_every_configured_platform_gets_its_adapter(monkeypatch, tmp_path, parts) -> None:
    s = settings(
        monkeypatch,
        tmp_path,
        TELEGRAM_BOT_TOKEN="123:abc",
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="shh",
        DISCORD_BOT_TOKEN="discord-token",
        DISCORD_API_BASE_URL="http://127.0.0.1:9/api/v10",
    )
    got = configured_adapters(s, *parts)
    kinds = {type(a) for a in got.adapters}
    assert kinds == {TelegramAdapter, SlackAdapter, DiscordAdapter} and got.failed == {}
    discord = next(a for a in got.adapters if isinstance(a, DiscordAdapter))
    assert discord.config.api_base_url == "http://127.0.0.1:9/api/v10"
    # routes: Slack's Events endpoint (signing secret set); Telegram polls, so none
    assert [r.path for a in got.adapters for r in a.routes()] == ["/slack/events"]
    assert "discord-token" not in repr(discord.config) and "123:abc" not in repr(got.adapters[0].config)


def test_a_bad_platform_is_one_line_and_the_others_still_build(monkeypatch, tmp_path, parts) -> None:
    s = settings(
        monkeypatch,
        tmp_path,
        TELEGRAM_BOT_TOKEN="not a token",
        SLACK_APP_TOKEN="xapp-1",
        DISCORD_BOT_TOKEN="discord-token",
    )
    got = configured_adapters(s, *parts)
    assert [a.platform for a in got.adapters] == ["discord"]
    assert set(got.failed) == {"telegram", "slack"}
    assert "TELEGRAM_BOT_TOKEN" in got.failed["telegram"] and "\n" not in got.failed["telegram"]
    assert "SLACK_BOT_TOKEN" in got.failed["slack"]


def test_webhook_mode_serves_its_path_and_empty_values_count_as_unset(monkeypatch, tmp_path, parts) -> None:
    s = settings(
        monkeypatch,
        tmp_path,
        TELEGRAM_BOT_TOKEN="123:abc",
        DISCORD_BOT_TOKEN="",
        TELEGRAM_WEBHOOK_URL="https://bot.example.com/hooks/tg",
        TELEGRAM_WEBHOOK_SECRET="abc_123",
    )
    got = configured_adapters(s, *parts)
    assert [a.platform for a in got.adapters] == ["telegram"]
    assert [r.path for r in got.adapters[0].routes()] == ["/hooks/tg"]


def test_platforms_the_bot_does_not_serve_are_skipped(monkeypatch, tmp_path, parts) -> None:
    s = settings(monkeypatch, tmp_path, TELEGRAM_BOT_TOKEN="123:abc", DISCORD_BOT_TOKEN="discord-token")
    got = configured_adapters(s, *parts, serves=["web", "telegram"])
    assert [a.platform for a in got.adapters] == ["telegram"] and got.failed == {}
