"""The Redis Streams that connect adapters to the engine.

    adapter --submit()--> {ns}:stream:intake --(group "engine")--> Engine
    Engine  --queue_reply()--> {ns}:stream:outbound:{platform} --(group "delivery")--> adapter

Intake is idempotent: ``submit`` claims the platform's event id with SET NX EX and adds
the message in the same Lua call, so a Slack retry or a redelivery after a reconnect is
taken once. Entries are acknowledged only after their work is done; a consumer that
dies leaves them pending, and :meth:`Bus.claim_stale` hands them to another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core.keys import Keys
from core.messages import IncomingMessage, Reply

ENGINE_GROUP = "engine"
DELIVERY_GROUP = "delivery"
SEEN_TTL_SECONDS = 7 * 24 * 3600
STREAM_MAXLEN = 100_000

# KEYS[1] = seen key ('' for none), KEYS[2] = stream; ARGV = ttl, maxlen, payload
_SUBMIT = """
if KEYS[1] ~= '' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    return false
  end
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[3])
"""


class Bus:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._submit = redis.register_script(_SUBMIT)
        self._groups_ready: set[tuple[str, str]] = set()
        self._pending_cursor: dict[str, str] = {}

    async def ensure_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups_ready:
            return
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add((stream, group))

    # -- intake ---------------------------------------------------------------------
    async def submit(self, message: IncomingMessage, event_id: str | None = None) -> bool:
        """Queue ``message`` for the engine. Returns False when ``event_id`` was seen
        before (a duplicate delivery), True when the message was queued."""
        seen = self.keys.seen(message.platform, message.bot_id, event_id) if event_id else ""
        entry = await self._submit(
            keys=[seen, self.keys.intake()],
            args=[SEEN_TTL_SECONDS, STREAM_MAXLEN, message.to_json()],
        )
        return entry is not None

    async def claim_event(self, platform: str, bot_id: str, event_id: str) -> bool:
        """Mark a platform event as taken; False when it was taken before."""
        key = self.keys.seen(platform, bot_id, event_id)
        return bool(await self.redis.set(key, "1", nx=True, ex=SEEN_TTL_SECONDS))

    async def read_intake(
        self, consumer: str, count: int = 32, block_ms: int = 1000
    ) -> list[tuple[str, IncomingMessage]]:
        """New intake entries for this consumer; its own unacknowledged ones first."""
        return [
            (entry_id, IncomingMessage.from_json(data))
            for entry_id, data in await self._read(
                self.keys.intake(), ENGINE_GROUP, consumer, count, block_ms
            )
        ]

    # -- outbound -------------------------------------------------------------------
    def queue_reply(self, pipe: Any, reply: Reply) -> None:
        """Add the XADD of ``reply`` to an open pipeline (atomic with history writes)."""
        pipe.xadd(
            self.keys.outbound(reply.platform, reply.bot_id),
            {"data": reply.to_json()},
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )

    async def publish_reply(self, reply: Reply) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self.queue_reply(pipe, reply)
            await pipe.execute()

    async def read_outbound(
        self, platform: str, bot_id: str, consumer: str, count: int = 32, block_ms: int = 1000
    ) -> list[tuple[str, Reply]]:
        return [
            (entry_id, Reply.from_json(data))
            for entry_id, data in await self._read(
                self.keys.outbound(platform, bot_id), DELIVERY_GROUP, consumer, count, block_ms
            )
        ]

    async def ack_outbound(self, platform: str, bot_id: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self.redis.xack(self.keys.outbound(platform, bot_id), DELIVERY_GROUP, *entry_ids)

    def queue_ack_intake(self, pipe: Any, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            pipe.xack(self.keys.intake(), ENGINE_GROUP, *entry_ids)

    async def ack_intake(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self.redis.xack(self.keys.intake(), ENGINE_GROUP, *entry_ids)

    def rewind(self, stream: str, consumer: str) -> None:
        """Re-read this consumer's pending entries on its next read (after a failure)."""
        self._pending_cursor[f"{stream}|{consumer}"] = "0"

    # -- recovery -------------------------------------------------------------------
    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int = 60_000, count: int = 100
    ) -> list[tuple[str, str]]:
        """Take over entries another consumer read but never acknowledged (it died)."""
        await self.ensure_group(stream, group)
        _next, entries, *_ = await self.redis.xautoclaim(
            stream, group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
        )
        return [(entry_id, fields["data"]) for entry_id, fields in entries if fields]

    async def pending_count(self, stream: str, group: str) -> int:
        await self.ensure_group(stream, group)
        info = await self.redis.xpending(stream, group)
        return int(info["pending"])

    async def _read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, str]]:
        await self.ensure_group(stream, group)
        # After a restart, first walk this consumer's own pending entries (read before a
        # crash, never acknowledged) with a moving cursor; then read only new ones.
        cursor_key = f"{stream}|{consumer}"
        cursor = self._pending_cursor.get(cursor_key, "0")
        if cursor != ">":
            response = await self.redis.xreadgroup(group, consumer, {stream: cursor}, count=count)
            entries = _entries(response)
            if entries:
                self._pending_cursor[cursor_key] = entries[-1][0]
                return [(eid, data) for eid, data in entries if data is not None]
            self._pending_cursor[cursor_key] = ">"
        response = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [(eid, data) for eid, data in _entries(response) if data is not None]


def _entries(response: Any) -> list[tuple[str, str | None]]:
    """Flatten XREADGROUP's reply; a trimmed-away pending entry has no fields."""
    return [
        (entry_id, (fields or {}).get("data"))
        for _stream, items in response or []
        for entry_id, fields in items
    ]
