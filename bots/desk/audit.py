"""The desk's audit log: who did what in the console, newest first.

Ticket changes also go to each ticket's own trail (``Tickets.audit``); this log is the
one place an admin reads every desk action: sign-ins, account changes, persona edits,
ticket work. It is a capped Redis list of JSON records.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from bots.desk.accounts import desk_key
from core import cluster
from core.keys import Keys

KEPT = 5000


@dataclass(frozen=True, slots=True)
class DeskEvent:
    at: float
    actor: str
    action: str
    detail: str


class DeskAudit:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = desk_key(keys, "audit")

    async def record(self, actor: str, action: str, detail: str = "") -> None:
        entry = json.dumps(asdict(DeskEvent(time.time(), actor, action, detail)), ensure_ascii=False)
        async with cluster.on_slot(self.redis, self.key).pipeline(transaction=True) as pipe:
            pipe.lpush(self.key, entry)
            pipe.ltrim(self.key, 0, KEPT - 1)
            await pipe.execute()

    async def recent(self, limit: int = 200) -> list[DeskEvent]:
        raw = await self.redis.lrange(self.key, 0, max(0, limit - 1))
        return [DeskEvent(**json.loads(r)) for r in raw]
