"""What one ``chatbot run`` process does: its role.

    all               engine + web chat + every bot on every configured platform (``make run``)
    web               web chat, desk and the webhook platforms (Slack Events API,
                      Telegram with a webhook URL) of every bot: the HTTP front door
    adapter:PLATFORM  one platform's intake and delivery, for every bot (telegram, slack, discord)
    worker            the engine only (the GPU process)

Any number of processes of each role share one Redis; each reads the streams under a
consumer name of its own (host, pid and a random suffix), so a restarted or extra
process never takes over a live one's entries by accident.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from core.errors import ConfigError

PLATFORMS = ("telegram", "slack", "discord")
ROLE_NAMES = ("all", "web", "worker", *(f"adapter:{p}" for p in PLATFORMS))


@dataclass(frozen=True, slots=True)
class Role:
    name: str  # all | web | worker | adapter
    platform: str = ""  # for ``adapter``

    @classmethod
    def parse(cls, text: str) -> Role:
        """``all``, ``web``, ``worker`` or ``adapter:PLATFORM``; anything else is one line."""
        name, _, platform = text.strip().lower().partition(":")
        if name in {"all", "web", "worker"} and not platform:
            return cls(name)
        if name == "adapter" and platform in PLATFORMS:
            return cls(name, platform)
        raise ConfigError(f"unknown role {text!r}; use one of: {', '.join(ROLE_NAMES)}")

    def __str__(self) -> str:
        return f"{self.name}:{self.platform}" if self.platform else self.name

    @property
    def runs_engine(self) -> bool:
        return self.name in {"all", "worker"}

    @property
    def runs_web_chat(self) -> bool:
        return self.name in {"all", "web"}

    def wants(self, platform: str, *, webhook: bool) -> bool:
        """Whether this role runs a bot's ``platform`` adapter (``webhook``: its events
        arrive as HTTP requests to the web app: a Slack Events API app, Telegram webhooks)."""
        if self.name == "all":
            return True
        if self.name == "adapter":
            return platform == self.platform
        return self.name == "web" and webhook


def consumer_name(role: str) -> str:
    """A stream consumer name no other process uses: ``worker-host-1234-a1b2c3``."""
    host = socket.gethostname().split(".")[0][:40] or "host"
    return f"{role}-{host}-{os.getpid()}-{secrets.token_hex(3)}"
