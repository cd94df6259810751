"""Replies as they are written: the text so far of a reply the LM is still generating.

The engine publishes a reply's text every few tokens; adapters that show replies as they
are written read it (the web chat always; Telegram, Discord and Slack when the persona
says ``stream: edit``). Partials are a convenience, never the record: the final reply
still travels through the outbound stream and is the only text history stores. So one
capped Redis stream per bot and platform carries them, read without a consumer group
from "now" on by every process that shows them; a reader that misses some simply shows
the next one, or only the final reply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from core.keys import Keys
from core.messages import ConversationKey, IncomingMessage

MAX_ENTRIES = 2_000  # per bot and platform: seconds of partials at full load; old ones are useless


@dataclass(frozen=True, slots=True)
class Partial:
    """The text a reply has so far. ``in_reply_to`` (the customer's message id) ties it to
    the final :class:`~core.messages.Reply`, which carries the same ``in_reply_to``."""

    bot_id: str
    platform: str
    chat_id: str
    user_id: str
    in_reply_to: str
    text: str
    seq: int  # 0, 1, 2, ... per reply: a reader drops one older than what it showed
    meta: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, message: IncomingMessage, text: str, seq: int) -> Partial:
        return cls(
            message.bot_id,
            message.platform,
            message.chat_id,
            message.user_id,
            message.message_id,
            text,
            seq,
            dict(message.meta),
        )

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.bot_id, self.platform, self.chat_id, self.user_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Partial:
        data: dict[str, Any] = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Partials:
    """Publish and follow partial replies of one deployment (one key namespace)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, max_entries: int = MAX_ENTRIES) -> None:
        self.redis = redis
        self.keys = keys
        self.max_entries = max_entries

    async def publish(self, partial: Partial) -> None:
        """Append ``partial`` to its bot's and platform's stream, trimming old entries."""
        await self.redis.xadd(
            self.keys.partials(partial.platform, partial.bot_id),
            {"data": partial.to_json()},
            maxlen=self.max_entries,
            approximate=True,
        )

    async def position(self, platform: str, bot_id: str) -> str:
        """The id of the newest partial now ("0-0" if none): where "from now on" starts."""
        newest = await self.redis.xrevrange(self.keys.partials(platform, bot_id), count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def follow(
        self, platform: str, bot_id: str, *, after: str | None = None, block_ms: int = 5_000
    ) -> AsyncIterator[Partial]:
        """Every partial published after ``after`` (default: from this call on), in order,
        until the caller stops. Not XREAD's "$": nothing between two reads is missed.

        Redis errors propagate: the caller decides whether to retry (partials lost while
        Redis is away do not matter; the final replies are in the outbound stream)."""
        stream = self.keys.partials(platform, bot_id)
        last = after if after is not None else await self.position(platform, bot_id)
        while True:
            response: Any = await self.redis.xread({stream: last}, block=block_ms, count=200)
            for _name, entries in response or ():
                for entry_id, fields in entries:
                    last = entry_id
                    raw = fields.get("data") if fields else None
                    if raw is not None:
                        yield Partial.from_json(raw)
