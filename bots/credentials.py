"""Each bot's platform secrets, read from the environment variables its persona names.

A persona names variables, never values (``credentials.telegram.token_env:
SHOP_TELEGRAM_TOKEN``); secrets stay in the environment or ``.env``. The default bot
(``CHATBOT_DEFAULT_BOT``) falls back to the usual names (``TELEGRAM_BOT_TOKEN``, ...), so a
one-bot setup needs no ``credentials`` at all; another bot without names has no
credentials there, and never borrows the default bot's. Values are read when an adapter
is built, so a variable added to ``.env`` is picked up by the next reconcile round.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from pydantic import SecretStr

from bots.config import Settings
from core.persona import Persona

# platform -> credential -> the default bot's variable (the names `chatbot run` always read)
DEFAULT_ENV: dict[str, dict[str, str]] = {
    "telegram": {
        "token": "TELEGRAM_BOT_TOKEN",
        "webhook_url": "TELEGRAM_WEBHOOK_URL",
        "webhook_secret": "TELEGRAM_WEBHOOK_SECRET",
    },
    "slack": {
        "bot_token": "SLACK_BOT_TOKEN",
        "signing_secret": "SLACK_SIGNING_SECRET",
        "app_token": "SLACK_APP_TOKEN",
    },
    "discord": {"token": "DISCORD_BOT_TOKEN"},
}
SECRET_PLATFORMS = tuple(DEFAULT_ENV)
# the credentials whose presence turns a platform on (as before: a Slack app is on with any)
_TURNS_ON = {
    "telegram": ("token",),
    "slack": ("bot_token", "signing_secret", "app_token"),
    "discord": ("token",),
}


class Environment:
    """Reads variables as ``Settings`` does: the settings' own fields (so overrides count),
    then the process environment, then ``.env`` (read once per instance)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dotenv: dict[str, str | None] | None = None

    def get(self, name: str) -> str:
        info = Settings.model_fields.get(name.lower())
        if info is not None and info.alias is None:
            value = getattr(self.settings, name.lower())
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            return str(value or "").strip()
        if name in os.environ:
            return os.environ[name].strip()
        if self._dotenv is None:
            env_file = Path(str(Settings.model_config.get("env_file") or ".env"))
            self._dotenv = dotenv_values(env_file) if env_file.is_file() else {}
        return (self._dotenv.get(name) or "").strip()


@dataclass(frozen=True)
class BotCredentials:
    """One bot's credentials on one platform: which variables, and their values."""

    bot_id: str
    platform: str
    names: dict[str, str]  # credential -> variable name (only those the bot has)
    values: dict[str, str] = field(repr=False)  # credential -> value ("" when unset)

    @property
    def configured(self) -> bool:
        return any(self.values.get(c) for c in _TURNS_ON[self.platform])

    @property
    def webhook(self) -> bool:
        """Events arrive as HTTP requests to the web app (so ``--role web`` serves them)."""
        if self.platform == "telegram":
            return bool(self.values.get("webhook_url"))
        if self.platform == "slack":
            return bool(self.values.get("signing_secret")) and not self.values.get("app_token")
        return False

    @property
    def fingerprint(self) -> str:
        """Changes when a value changes (the adapter is then rebuilt); reveals nothing."""
        joined = "\0".join(f"{k}={self.values[k]}" for k in sorted(self.values))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def setting_names(self) -> dict[str, str]:
        """Default variable -> what an error line should name for this bot instead."""
        out = {}
        for credential, default in DEFAULT_ENV[self.platform].items():
            own = self.names.get(credential) or f"credentials.{self.platform}.{credential}_env"
            if own != default:
                out[default] = own
        return out

    def status(self) -> dict[str, bool]:
        """Variable name -> whether it is set (what ``chatbot bots show`` prints)."""
        return {name: bool(self.values.get(credential)) for credential, name in self.names.items()}


def resolve(env: Environment, persona: Persona, platform: str) -> BotCredentials:
    """The credentials ``persona`` names for ``platform`` (a secret platform), read now."""
    section = getattr(persona.credentials, platform)
    names: dict[str, str] = {}
    for credential, default in DEFAULT_ENV[platform].items():
        name = getattr(section, f"{credential}_env")
        if name is None and persona.bot_id == env.settings.default_bot:
            name = default
        if name:
            names[credential] = name
    values = {credential: env.get(name) for credential, name in names.items()}
    return BotCredentials(persona.bot_id, platform, names, values)
