"""How fast a bot may send and edit messages in one chat: sliding windows per chat, or
for the whole bot, as each platform documents its limits (``adapters.streaming`` uses
it for edit-in-place streaming). A 429 pauses the chat for the time the platform asked.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

MAX_CHATS = 10_000  # past this many, chats idle for longer than every window are forgotten


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` messages and edits per ``seconds``, per chat or for the whole bot."""

    count: int
    seconds: float
    per: Literal["chat", "bot"] = "chat"


class Throttle:
    """Sliding windows of sends and edits; ``clock`` is replaceable (tests count, not wait)."""

    def __init__(self, limits: tuple[Limit, ...], clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._times: dict[str, deque[float]] = {}
        self._paused: dict[str, float] = {}
        self._span = max((limit.seconds for limit in limits), default=0.0)

    def ready(self, chat: str) -> bool:
        """Whether one more message or edit may go to ``chat`` now."""
        now = self.clock()
        if max(self._paused.get(chat, 0.0), self._paused.get("", 0.0)) > now:
            return False
        return all(
            sum(1 for at in self._times.get(self._scope(limit, chat), ()) if at > now - limit.seconds)
            < limit.count
            for limit in self.limits
        )

    def count(self, chat: str) -> None:
        """One message or edit went to ``chat``."""
        now = self.clock()
        for scope in {self._scope(limit, chat) for limit in self.limits}:
            times = self._times.setdefault(scope, deque())
            times.append(now)
            while times and times[0] <= now - self._span:
                times.popleft()
        if len(self._times) > MAX_CHATS:  # forget chats idle for longer than every window
            for key in [k for k, t in self._times.items() if not t or t[-1] <= now - self._span]:
                del self._times[key]

    def allow(self, chat: str) -> bool:
        """:meth:`ready`, and counted when it is."""
        if not self.ready(chat):
            return False
        self.count(chat)
        return True

    @staticmethod
    def _scope(limit: Limit, chat: str) -> str:
        return chat if limit.per == "chat" else ""

    def pause(self, chat: str, seconds: float) -> None:
        """The platform answered 429: nothing more to ``chat`` for ``seconds``."""
        self._paused[chat] = self.clock() + seconds
