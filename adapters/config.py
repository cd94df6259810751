"""Each platform's config, and the checks a config runs on itself (in ``__post_init__``),
so a bad value fails at start with one line naming its setting, never later inside an SDK
call. Secrets are ``repr=False`` fields (``PlatformAdapter`` keeps them out of the logs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

from core.errors import ConfigError


def require(ok: bool, problem: str) -> None:
    """One config check: ``problem`` names the setting and says what to do."""
    if not ok:
        raise ConfigError(problem)


def is_url(value: str | None, *, schemes: tuple[str, ...] = ("http", "https"), path: bool = False) -> bool:
    """A full URL with one of ``schemes`` (and a path, when ``path``)."""
    url = urlparse(value or "")
    return url.scheme in schemes and bool(url.netloc) and (not path or url.path not in ("", "/"))


def require_url(
    value: str | None,
    setting: str,
    *,
    schemes: tuple[str, ...] = ("http", "https"),
    path: bool = False,
    example: str = "",
    optional: bool = False,
) -> None:
    """A URL setting (``optional`` ones may be unset; ``path`` ones, a route we serve, need a
    path), refused in one line that names ``setting`` and shows what was given."""
    if optional and value is None:
        return
    kinds = f"{schemes[0]}(s)" if schemes == (schemes[0], schemes[0] + "s") else "/".join(schemes)
    shape = (
        f"a full {kinds} URL" + (" with a path" if path else "") + (f" such as {example}" if example else "")
    )
    require(is_url(value, schemes=schemes, path=path), f"{setting} must be {shape} (got {value!r})")


def host(url: str) -> str:
    """The host (and port) of a configured URL, for error lines: not its path, where an SDK
    may put the token."""
    return urlparse(url).netloc or url


_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what setWebhook accepts


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    token: str = field(repr=False)
    api_base_url: str = "https://api.telegram.org/bot"  # PTB base_url; the token is appended
    webhook_url: str | None = None  # set = webhook mode; its path is the route we serve
    webhook_secret: str | None = field(default=None, repr=False)
    poll_timeout: int = 10  # seconds a getUpdates long poll waits for news
    connect_timeout: float = 5.0
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        require(
            bool(_TOKEN.match(self.token or "")),
            "TELEGRAM_BOT_TOKEN does not look like a bot token (123456:ABC-...); copy it from @BotFather",
        )
        require_url(self.api_base_url, "TELEGRAM_API_BASE_URL", example="https://api.telegram.org/bot")
        if self.webhook_url is not None:
            example = "https://bot.example.com/telegram/webhook"
            require_url(self.webhook_url, "TELEGRAM_WEBHOOK_URL", path=True, example=example)
            require(
                bool(_SECRET.match(self.webhook_secret or "")),
                "TELEGRAM_WEBHOOK_SECRET is required in webhook mode: 1-256 characters from "
                "A-Z, a-z, 0-9, _ and -",
            )

    @property
    def webhook_path(self) -> str | None:
        """The route Telegram POSTs updates to (the path of the URL); None when polling."""
        return urlparse(self.webhook_url).path if self.webhook_url else None


DISCORD_TOKEN_HELP = (
    "copy the token again from the Developer Portal (Applications > your app > Bot > Reset Token)"
)


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    token: str = field(repr=False)
    api_base_url: str | None = None  # replaces https://discord.com/api/v10 (DISCORD_API_BASE_URL)
    gateway_url: str | None = None  # replaces wss://gateway.discord.gg/ (DISCORD_GATEWAY_URL)
    connect_timeout: float = 30.0  # seconds to wait for the gateway's READY at start
    max_ratelimit_timeout: float = 30.0  # longer 429 waits come back to us as RateLimited

    def __post_init__(self) -> None:
        require(bool(self.token.strip()), f"DISCORD_BOT_TOKEN is empty; {DISCORD_TOKEN_HELP}")
        require_url(self.api_base_url, "DISCORD_API_BASE_URL", optional=True)
        require_url(self.gateway_url, "DISCORD_GATEWAY_URL", schemes=("ws", "wss"), optional=True)


DEFAULT_SLACK_API_URL = "https://slack.com/api/"


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """SLACK_BOT_TOKEN plus SLACK_SIGNING_SECRET (HTTP) and/or SLACK_APP_TOKEN (Socket Mode)."""

    bot_token: str = field(repr=False)
    signing_secret: str = field(default="", repr=False)
    app_token: str = field(default="", repr=False)
    api_url: str = DEFAULT_SLACK_API_URL

    def __post_init__(self) -> None:
        require(bool(self.bot_token), "SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token (xoxb-...)")
        require(
            bool(self.signing_secret or self.app_token),
            "set SLACK_SIGNING_SECRET (Events API over HTTP) or SLACK_APP_TOKEN (Socket Mode)",
        )
        require_url(self.api_url, "SLACK_API_URL")
