"""Poison entries: intake entries that failed ``max_attempts`` times go to the
dead-letter stream ``{ns}:stream:dead`` with the error, and the customer gets the
persona's "unavailable" text, so one bad entry (a corrupt record, a persona that fails
validation, a model that raises) never holds everyone else up.

Failed attempts are counted per entry in a hash (``intake-failures``), not read from
XPENDING's delivery count: an entry is also delivered again when its conversation was
busy on another worker or its worker was killed, and neither is a failure of the entry.
``chatbot dead-letters list|retry|drop`` looks after the stream. In a Redis Cluster the
move commits like an engine entry, slot by slot (``core.commits``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core import cluster, metrics
from core.bus import Bus
from core.commits import DONE_TTL_SECONDS, EntryChange, SlotCommits
from core.messages import IncomingMessage, Reply, Route
from core.persona import Persona, PersonaStore
from core.slots import fill_slots

log = logging.getLogger(__name__)

_FALLBACK = Persona(bot_id="unknown", display_name="Assistant")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str  # in the dead-letter stream
    entry_id: str  # the intake entry it was
    message: IncomingMessage
    error: str
    attempts: int
    failed_at: float


class DeadLetters:
    def __init__(self, redis: aioredis.Redis, bus: Bus, personas: PersonaStore) -> None:
        self.redis = redis
        self.bus = bus
        self.keys = bus.keys
        self.personas = personas

    async def failed(self, entry_id: str, message: IncomingMessage, error: str, max_attempts: int) -> bool:
        """Count a failed attempt at ``entry_id``; at ``max_attempts`` move it to the
        dead-letter stream and tell the customer. True when it was moved."""
        attempts = int(await self.redis.hincrby(self.keys.intake_failures(), entry_id, 1))
        if attempts < max_attempts:
            return False
        try:
            persona = (await self.personas.get_many([message.bot_id])).get(message.bot_id) or _FALLBACK
        except Exception:  # the persona itself may be what is broken
            persona = _FALLBACK
        reply = Reply.to(message, fill_slots(persona.messages.unavailable, persona.facts), Route.UNAVAILABLE)
        if cluster.is_cluster(self.redis):  # the dead letter and the reply are in other slots
            change = EntryChange(entry_id, message, cluster.recorder())
            self._queue_move(change.pipe, entry_id, message, error, attempts, reply)
            committed, _lost = await SlotCommits(self.redis, self.keys).commit([change])
            if not committed:  # another worker committed the entry meanwhile
                return True
        else:
            async with self.redis.pipeline(transaction=True) as pipe:
                self._queue_move(pipe, entry_id, message, error, attempts, reply)
                pipe.set(
                    self.keys.done(message.conversation, message.message_id), entry_id, ex=DONE_TTL_SECONDS
                )
                pipe.zrem(self.keys.inflight(message.conversation), entry_id)
                pipe.hdel(self.keys.intake_failures(), entry_id)
                self.bus.queue_ack_intake(pipe, [entry_id])
                await pipe.execute()
        metrics.DEAD_LETTERED.inc()
        log.error(
            "engine: intake entry %s failed %d times, moved to dead letters: %s", entry_id, attempts, error
        )
        return True

    def _queue_move(
        self, pipe: Any, entry_id: str, message: IncomingMessage, error: str, attempts: int, reply: Reply
    ) -> None:
        """The dead letter and the customer's "unavailable" reply."""
        pipe.xadd(
            self.keys.dead_letters(),
            {
                "data": message.to_json(),
                "entry_id": entry_id,
                "error": error[:2000],
                "attempts": attempts,
                "failed_at": time.time(),
            },
        )
        self.bus.queue_reply(pipe, reply)

    async def list(self, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters."""
        out = []
        entries: Any = await self.redis.xrange(self.keys.dead_letters(), count=count)  # decoded str
        for dead_id, fields in entries:
            out.append(
                DeadLetter(
                    id=dead_id,
                    entry_id=fields.get("entry_id", ""),
                    message=IncomingMessage.from_json(fields["data"]),
                    error=fields.get("error", ""),
                    attempts=int(fields.get("attempts", 0)),
                    failed_at=float(fields.get("failed_at", 0)),
                )
            )
        return out

    async def retry(self, ids: Sequence[str] | None = None) -> int:
        """Queue dead letters (``ids``, or all) on the intake again; returns how many."""
        letters = [d for d in await self.list(10_000) if ids is None or d.id in ids]
        for d in letters:
            await self.redis.delete(self.keys.done(d.message.conversation, d.message.message_id))
            await self.bus.submit(d.message)
            await self.redis.xdel(self.keys.dead_letters(), d.id)
        return len(letters)

    async def drop(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids``, or all); returns how many."""
        letters = [d.id for d in await self.list(10_000) if ids is None or d.id in ids]
        if letters:
            await self.redis.xdel(self.keys.dead_letters(), *letters)
        return len(letters)


__all__ = ["DeadLetter", "DeadLetters"]
