"""Per-user conversation history: one Redis LIST per conversation, one JSON record a turn.

Unlike a tracker saved as one blob (read, merge, rewrite on every turn), appending a
turn is RPUSH + LTRIM + EXPIRE in one pipeline and reading the recent window is one
LRANGE, so both cost the same at 10 turns or 10,000. The list is capped (oldest turns
dropped) and expires after an idle TTL that every write renews.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from core import cluster
from core.keys import Keys
from core.messages import Attachment, ConversationKey


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance in a conversation."""

    role: str  # "user", "bot" or "agent" (a human from the support team)
    text: str
    timestamp: float = field(default_factory=time.time)
    intent: str = ""
    confidence: float = 0.0
    route: str = ""
    message_id: str = ""
    display_name: str = ""
    attachments: tuple[Attachment, ...] = ()  # what the customer sent besides text (user turns)

    def to_json(self) -> str:
        data = asdict(self)
        if not self.attachments:
            del data["attachments"]  # most turns have none: keep the record small
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Turn:
        data: dict[str, Any] = json.loads(raw)
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["attachments"] = tuple(Attachment.from_dict(a) for a in fields.get("attachments") or ())
        return cls(**fields)


class History:
    """Reads and writes conversation turns; every public call is one round trip."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        max_turns: int = 200,
        ttl_seconds: int = 30 * 24 * 3600,
    ) -> None:
        if max_turns < 1:
            raise ValueError("history max_turns must be at least 1")
        if ttl_seconds < 1:
            raise ValueError("history ttl_seconds must be at least 1")
        self.redis = redis
        self.keys = keys
        self.max_turns = max_turns
        self.ttl_seconds = ttl_seconds

    def queue_append(self, pipe: Any, conv: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add the commands that append ``turns`` to an open pipeline/transaction, so the
        engine can store a turn and publish its reply atomically."""
        if not turns:
            return
        key = self.keys.history(conv)
        index = self.keys.user_index(conv.platform, conv.user_id)
        pipe.rpush(key, *(t.to_json() for t in turns))
        pipe.ltrim(key, -self.max_turns, -1)
        pipe.expire(key, self.ttl_seconds)
        pipe.sadd(index, key)
        pipe.expire(index, self.ttl_seconds)

    async def append_turns(self, conv: ConversationKey, turns: Sequence[Turn]) -> None:
        async with cluster.on_slot(self.redis, self.keys.history(conv)).pipeline(transaction=True) as pipe:
            self.queue_append(pipe, conv, turns)
            await pipe.execute()

    async def recent(self, conv: ConversationKey, limit: int = 20) -> list[Turn]:
        """The last ``limit`` turns, oldest first."""
        if limit <= 0:
            return []
        raw = await self.redis.lrange(self.keys.history(conv), -limit, -1)
        return [Turn.from_json(r) for r in raw]

    async def conversations_of(self, platform: str, user_id: str) -> list[str]:
        """Every key that holds data about this user (history, hand-off state, ...)."""
        members = await self.redis.smembers(self.keys.user_index(platform, user_id))
        return sorted(m if isinstance(m, str) else m.decode() for m in members)

    async def export_user(self, platform: str, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """All stored turns of a user, by conversation key (the data-access request)."""
        keys = [k for k in await self.conversations_of(platform, user_id) if ":history:" in k]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.lrange(key, 0, -1)
            results = await pipe.execute()
        return {k: [json.loads(r) for r in raw] for k, raw in zip(keys, results, strict=False)}

    async def forget_user(self, platform: str, user_id: str) -> int:
        """Delete everything stored about a user (the right-to-erasure path): every key
        in the user's index, and every other key with the user's hash tag (idempotency
        records, leases, follow-up markers: ids and counts, yet they name the user).

        Returns how many keys were removed. Idempotency records of platform events are
        not personal data and expire on their own.
        """
        index = self.keys.user_index(platform, user_id)
        keys = await self.conversations_of(platform, user_id)
        tickets = [k.rsplit(":", 1)[-1] for k in keys if k.startswith(self.keys.ticket(""))]
        removed = 0
        # The user's own keys share the index's slot; their tickets live in the tickets'
        # slot (one slot each, so each transaction keeps to one; on one server, one slot).
        for group in cluster.by_slot(self.redis, [*keys, index]) if keys else []:
            async with cluster.on_slot(self.redis, group[0]).pipeline(transaction=True) as pipe:
                pipe.delete(*group)
                if self.keys.ticket(tickets[0] if tickets else "") in group:
                    for ticket_id in tickets:
                        for status in ("open", "claimed", "resolved", "all", "reminders"):
                            pipe.zrem(self.keys.tickets(status), ticket_id)
                result = await pipe.execute()
            removed += int(result[0])
        removed = max(0, removed - 1)  # the index itself
        tagged = [k async for k in self.redis.scan_iter(match=self.keys.user_pattern(platform, user_id))]
        if tagged:  # all in the user's slot
            removed += int(await self.redis.delete(*tagged))
        return removed
