"""Which platform adapters to run: every one whose credentials are set.

A platform whose settings are wrong (a malformed token, a webhook URL without a secret)
is reported in one line and left out; the others, and the web chat, still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from adapters.base import Adapter
from bots.config import Settings
from core.bus import Bus
from core.errors import ChatbotError
from core.persona import PersonaStore

log = logging.getLogger(__name__)


@dataclass
class Platforms:
    """The adapters to start, and why any configured platform was left out."""

    adapters: list[Adapter] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def _telegram(settings: Settings, bus: Bus, personas: PersonaStore) -> Adapter:
    from adapters.config import TelegramConfig
    from adapters.telegram import TelegramAdapter

    config = TelegramConfig(
        token=_secret(settings.telegram_bot_token),
        api_base_url=settings.telegram_api_base_url,
        webhook_url=settings.telegram_webhook_url or None,
        webhook_secret=_secret(settings.telegram_webhook_secret) or None,
    )
    return TelegramAdapter(bus, config, bot_id=settings.default_bot, personas=personas)


def _slack(settings: Settings, bus: Bus, personas: PersonaStore) -> Adapter:
    from adapters.config import SlackConfig
    from adapters.slack import SlackAdapter

    config = SlackConfig(
        bot_token=_secret(settings.slack_bot_token),
        signing_secret=_secret(settings.slack_signing_secret),
        app_token=_secret(settings.slack_app_token),
        api_url=settings.slack_api_url,
    )
    return SlackAdapter(bus, config, bot_id=settings.default_bot, personas=personas)


def _discord(settings: Settings, bus: Bus, personas: PersonaStore) -> Adapter:
    from adapters.config import DiscordConfig
    from adapters.discord import DiscordAdapter

    config = DiscordConfig(
        token=_secret(settings.discord_bot_token),
        api_base_url=settings.discord_api_base_url or None,
        gateway_url=settings.discord_gateway_url or None,
    )
    return DiscordAdapter(bus, config, bot_id=settings.default_bot, personas=personas)


def _configured(settings: Settings) -> dict[str, Callable[[Settings, Bus, PersonaStore], Adapter]]:
    """Platforms with at least one credential set (an empty value counts as unset)."""
    wanted: dict[str, Callable[[Settings, Bus, PersonaStore], Adapter]] = {}
    if _secret(settings.telegram_bot_token):
        wanted["telegram"] = _telegram
    if any(map(_secret, (settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token))):
        wanted["slack"] = _slack
    if _secret(settings.discord_bot_token):
        wanted["discord"] = _discord
    return wanted


def configured_adapters(
    settings: Settings, bus: Bus, personas: PersonaStore, *, serves: list[str] | None = None
) -> Platforms:
    """Build the adapter of every configured platform the default bot serves."""
    result = Platforms()
    for platform, build in _configured(settings).items():
        if serves is not None and platform not in serves:
            log.warning(
                "%s credentials are set but bot %r does not serve %s (persona `platforms`)",
                platform,
                settings.default_bot,
                platform,
            )
            continue
        try:
            result.adapters.append(build(settings, bus, personas))
        except ChatbotError as exc:
            result.failed[platform] = str(exc)
            log.error("%s adapter not started: %s", platform, exc)
    return result
