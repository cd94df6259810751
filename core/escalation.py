"""Hand-off to a human: the escalation record a support team works from.

An escalation is a Redis hash with the conversation, the reason and the transcript at
the time; open escalations sit in a sorted set by time. While a conversation is handed
off the bot stays quiet apart from a short acknowledgement, until someone hands it back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core.conversation import Conversations
from core.history import Turn
from core.keys import Keys
from core.messages import ConversationKey


@dataclass(frozen=True, slots=True)
class Escalation:
    id: str
    conversation: ConversationKey
    reason: str
    created_at: float
    status: str
    display_name: str
    transcript: list[dict[str, Any]]


class Escalations:
    """Escalation records; the hand-off flag itself belongs to the conversation store."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, conversations: Conversations) -> None:
        self.redis = redis
        self.keys = keys
        self.conversations = conversations
        self.ttl_seconds = conversations.ttl_seconds

    def queue_open(
        self,
        pipe: Any,
        conv: ConversationKey,
        reason: str,
        transcript: Sequence[Turn],
        display_name: str = "",
    ) -> str:
        """Add the commands that open an escalation to a pipeline; returns its id (the
        caller hands the conversation off with it, in the same pipeline)."""
        escalation_id = uuid.uuid4().hex[:16]
        key = self.keys.escalation(escalation_id)
        now = time.time()
        pipe.hset(
            key,
            mapping={
                "id": escalation_id,
                "conversation": json.dumps(conv.parts()),
                "reason": reason,
                "created_at": now,
                "status": "open",
                "display_name": display_name,
                "transcript": json.dumps([json.loads(t.to_json()) for t in transcript], ensure_ascii=False),
            },
        )
        pipe.expire(key, self.ttl_seconds)
        pipe.zadd(self.keys.escalations_open(), {escalation_id: now})
        pipe.sadd(self.keys.user_index(conv.platform, conv.user_id), key)
        return escalation_id

    async def get(self, escalation_id: str) -> Escalation | None:
        data = await self.redis.hgetall(self.keys.escalation(escalation_id))
        if not data:
            return None
        return Escalation(
            id=data["id"],
            conversation=ConversationKey(*json.loads(data["conversation"])),
            reason=data["reason"],
            created_at=float(data["created_at"]),
            status=data["status"],
            display_name=data.get("display_name", ""),
            transcript=json.loads(data["transcript"]),
        )

    async def open_ids(self, limit: int = 100) -> list[str]:
        return list(await self.redis.zrange(self.keys.escalations_open(), 0, limit - 1))

    async def resolve(self, escalation_id: str) -> bool:
        """Hand the conversation back to the bot."""
        escalation = await self.get(escalation_id)
        if escalation is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.escalation(escalation_id), "status", "resolved")
            pipe.zrem(self.keys.escalations_open(), escalation_id)
            self.conversations.queue_hand_back(pipe, escalation.conversation)
            await pipe.execute()
        return True
