"""Building one bot's adapter for one platform from its credentials (``bots.credentials``).

A platform whose settings are wrong (a malformed token, a webhook URL without a secret)
is refused in one line naming the bot's own variable; its other platforms, the other
bots and the web chat still run. ``bots.fleet`` decides which adapters run.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.base import Adapter
from adapters.config import with_names
from bots.config import Settings
from bots.credentials import BotCredentials
from core.bus import Bus
from core.errors import ConfigError
from core.persona import PersonaStore

Builder = Callable[[BotCredentials, Settings, Bus, PersonaStore], Adapter]


def _telegram(creds: BotCredentials, settings: Settings, bus: Bus, personas: PersonaStore) -> Adapter:
    from adapters.config import TelegramConfig
    from adapters.telegram import TelegramAdapter

    config = TelegramConfig(
        token=creds.values.get("token", ""),
        api_base_url=settings.telegram_api_base_url,
        webhook_url=creds.values.get("webhook_url") or None,
        webhook_secret=creds.values.get("webhook_secret") or None,
    )
    return TelegramAdapter(bus, config, bot_id=creds.bot_id, personas=personas)


def _slack(creds: BotCredentials, settings: Settings, bus: Bus, personas: PersonaStore) -> Adapter:
    from adapters.config import SlackConfig
    from adapters.slack import SlackAdapter

    paths: tuple[str, ...] = (f"/slack/{creds.bot_id}/events",)
    if creds.bot_id == settings.default_bot:
        paths = ("/slack/events", *paths)
    config = SlackConfig(
        bot_token=creds.values.get("bot_token", ""),
        signing_secret=creds.values.get("signing_secret", ""),
        app_token=creds.values.get("app_token", ""),
        api_url=settings.slack_api_url,
        events_paths=paths,
    )
    return SlackAdapter(bus, config, bot_id=creds.bot_id, personas=personas)


def _discord(creds: BotCredentials, settings: Settings, bus: Bus, personas: PersonaStore) -> Adapter:
    from adapters.config import DiscordConfig
    from adapters.discord import DiscordAdapter

    config = DiscordConfig(
        token=creds.values.get("token", ""),
        api_base_url=settings.discord_api_base_url or None,
        gateway_url=settings.discord_gateway_url or None,
    )
    return DiscordAdapter(bus, config, bot_id=creds.bot_id, personas=personas)


BUILDERS: dict[str, Builder] = {"telegram": _telegram, "slack": _slack, "discord": _discord}


def build_adapter(creds: BotCredentials, settings: Settings, bus: Bus, personas: PersonaStore) -> Adapter:
    """The adapter of ``creds``' bot and platform; a bad setting is one ConfigError line
    naming the bot's own variable."""
    names = creds.setting_names()
    try:
        adapter = BUILDERS[creds.platform](creds, settings, bus, personas)
    except ConfigError as exc:
        raise ConfigError(f"bot {creds.bot_id!r}: {with_names(str(exc), names)}") from None
    adapter.setting_names = names
    return adapter
