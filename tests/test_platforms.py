"""Which adapters a bot gets from its credentials, and how bad settings are told."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from adapters.telegram import TelegramAdapter
from bots.config import Settings
from bots.credentials import SECRET_PLATFORMS, Environment, resolve
from bots.platforms import build_adapter
from core.bus import Bus
from core.errors import ConfigError
from core.keys import Keys
from core.persona import Persona, PersonaStore

UNSET = dict(
    TELEGRAM_BOT_TOKEN=None,
    SLACK_BOT_TOKEN=None,
    SLACK_SIGNING_SECRET=None,
    SLACK_APP_TOKEN=None,
    DISCORD_BOT_TOKEN=None,
    TELEGRAM_WEBHOOK_URL=None,
    TELEGRAM_WEBHOOK_SECRET=None,
    SHOP_TELEGRAM_TOKEN=None,
)
SUPPORT = Persona(bot_id="support", display_name="Ava")
SHOP = Persona.model_validate(
    {
        "bot_id": "shop",
        "display_name": "Sam",
        "credentials": {
            "telegram": {"token_env": "SHOP_TELEGRAM_TOKEN"},
            "slack": {"bot_token_env": "SHOP_SLACK"},
        },
    }
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


def adapters(
    s: Settings, persona: Persona, parts: tuple[Bus, PersonaStore]
) -> tuple[list[Any], dict[str, str]]:
    """What the fleet would build for ``persona``: adapters, and failures by platform."""
    built, failed = [], {}
    for platform in SECRET_PLATFORMS:
        creds = resolve(Environment(s), persona, platform)
        if not creds.configured:
            continue
        try:
            built.append(build_adapter(creds, s, *parts))
        except ConfigError as exc:
            failed[platform] = str(exc)
    return built, failed


def test_nothing_configured_means_no_adapters(monkeypatch, tmp_path, parts) -> None:
    assert adapters(settings(monkeypatch, tmp_path), SUPPORT, parts) == ([], {})


def test_the_default_bot_reads_the_usual_variables(monkeypatch, tmp_path, parts) -> None:
    s = settings(
        monkeypatch,
        tmp_path,
        TELEGRAM_BOT_TOKEN="123:abc",
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="shh",
        DISCORD_BOT_TOKEN="discord-token",
        DISCORD_API_BASE_URL="http://127.0.0.1:9/api/v10",
    )
    built, failed = adapters(s, SUPPORT, parts)
    assert {type(a) for a in built} == {TelegramAdapter, SlackAdapter, DiscordAdapter} and failed == {}
    discord = next(a for a in built if isinstance(a, DiscordAdapter))
    assert discord.config.api_base_url == "http://127.0.0.1:9/api/v10"
    # the default bot's Slack Events URL is the old path and its own; Telegram polls: no route
    assert [r.path for a in built for r in a.routes()] == ["/slack/events", "/slack/support/events"]
    assert "discord-token" not in repr(discord.config) and "123:abc" not in repr(built[0].config)


def test_another_bot_reads_only_the_variables_its_persona_names(monkeypatch, tmp_path, parts) -> None:
    s = settings(
        monkeypatch,
        tmp_path,
        TELEGRAM_BOT_TOKEN="123:abc",
        SHOP_TELEGRAM_TOKEN="456:def",
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="shh",
    )
    built, failed = adapters(s, SHOP, parts)
    assert [(a.platform, a.bot_id) for a in built] == [("telegram", "shop")]  # never the default's
    assert built[0].config.token == "456:def"
    # Slack names only a bot token variable that is unset: not configured, no adapter
    assert failed == {} and not resolve(Environment(s), SHOP, "slack").configured


def test_a_bad_value_is_one_line_naming_the_bots_own_variable(monkeypatch, tmp_path, parts) -> None:
    s = settings(monkeypatch, tmp_path, SHOP_TELEGRAM_TOKEN="not a token", DISCORD_BOT_TOKEN="discord-token")
    built, failed = adapters(s, SHOP, parts)
    assert built == [] and set(failed) == {"telegram"}
    assert failed["telegram"].startswith("bot 'shop': SHOP_TELEGRAM_TOKEN does not look like a bot token")
    assert "TELEGRAM_BOT_TOKEN" not in failed["telegram"] and "\n" not in failed["telegram"]
    # the default bot's bad values still name the usual variables
    s = settings(monkeypatch, tmp_path, TELEGRAM_BOT_TOKEN="not a token", SLACK_APP_TOKEN="xapp-1")
    _built, failed = adapters(s, SUPPORT, parts)
    assert "TELEGRAM_BOT_TOKEN" in failed["telegram"] and "SLACK_BOT_TOKEN" in failed["slack"]


def test_variables_are_read_from_dotenv_too_and_empty_counts_as_unset(monkeypatch, tmp_path, parts) -> None:
    s = settings(monkeypatch, tmp_path, DISCORD_BOT_TOKEN="")
    (tmp_path / ".env").write_text("SHOP_TELEGRAM_TOKEN=789:ghi\n", encoding="utf-8")
    built, _failed = adapters(s, SHOP, parts)
    assert [a.config.token for a in built] == ["789:ghi"]
    assert adapters(s, SUPPORT, parts) == ([], {})
    status = resolve(Environment(s), SHOP, "telegram").status()
    assert status == {"SHOP_TELEGRAM_TOKEN": True}  # names and set/unset, never the value


def test_webhook_mode_serves_its_path(monkeypatch, tmp_path, parts) -> None:
    s = settings(
        monkeypatch,
        tmp_path,
        TELEGRAM_BOT_TOKEN="123:abc",
        TELEGRAM_WEBHOOK_URL="https://bot.example.com/hooks/tg",
        TELEGRAM_WEBHOOK_SECRET="abc_123",
    )
    built, _failed = adapters(s, SUPPORT, parts)
    assert [r.path for r in built[0].routes()] == ["/hooks/tg"]
    assert resolve(Environment(s), SUPPORT, "telegram").webhook


def test_env_names_in_a_persona_are_validated() -> None:
    with pytest.raises(ValueError, match="token_env"):
        Persona.model_validate(
            {"bot_id": "x", "display_name": "X", "credentials": {"telegram": {"token_env": "not a name"}}}
        )
