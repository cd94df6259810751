"""Events pushed to a customer's open pages over Server-Sent Events.

Each open page listens on its own bounded queue: a page too slow to read loses its
oldest events instead of holding the server's memory. Nothing is kept for a customer
with no page open; a page opened later reads the conversation's history instead. Events
have a kind (the SSE ``event:`` field): the stream's own, or one given at publishing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse

from core.history import Turn
from core.messages import Reply

QUEUE_SIZE = 100  # events held for one slow page before the oldest are dropped
PING_SECONDS = 15  # keeps proxies from closing an idle stream


class PushChannels:
    """Open event streams by key (a customer's id), and publishing to all of a key's."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._listeners: dict[str, set[asyncio.Queue[tuple[str | None, dict[str, Any]]]]] = {}

    def listening(self, key: str) -> int:
        """How many pages listen on ``key`` now."""
        return len(self._listeners.get(key, ()))

    def publish(self, key: str, event: dict[str, Any], *, kind: str | None = None) -> None:
        """Hand ``event`` to every page open on ``key``, dropping a full queue's oldest;
        ``kind`` replaces the stream's own kind for this event."""
        for queue in self._listeners.get(key, set()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait((kind, event))

    def stream(self, key: str, kind: str) -> EventSourceResponse:
        """A page's stream: a ``ready`` event, then each published event as ``kind``. The
        page listens from this call on, so nothing published meanwhile is missed."""
        queue: asyncio.Queue[tuple[str | None, dict[str, Any]]] = asyncio.Queue(self.queue_size)
        self._listeners.setdefault(key, set()).add(queue)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "ready", "data": "{}"}
                while True:
                    own, event = await queue.get()
                    yield {"event": own or kind, "data": json.dumps(event, ensure_ascii=False)}
            finally:
                listeners = self._listeners.get(key, set())
                listeners.discard(queue)
                if not listeners:
                    self._listeners.pop(key, None)

        return EventSourceResponse(events(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"})


def turn_event(turn: Turn) -> dict[str, Any]:
    """What a customer may see of a turn: who spoke, what, when (no intents or scores)."""
    role = turn.role if turn.role in ("user", "bot", "agent") else "bot"
    return {
        "role": role,
        "text": turn.text,
        "at": turn.timestamp,
        "name": turn.display_name if role == "agent" else "",
    }


def reply_event(reply: Reply) -> dict[str, Any]:
    """A reply pushed to a page: who wrote it, and which message of the page it answers."""
    agent = reply.meta.get("agent", "")
    return {
        "role": "agent" if agent or reply.route.value == "agent" else "bot",
        "name": agent,
        "text": reply.text,
        "route": reply.route.value,
        "at": reply.timestamp,
        "in_reply_to": reply.in_reply_to,
        "ref": reply.meta.get("ref", ""),
        "quick_replies": [q.to_api() for q in reply.quick_replies],
    }
