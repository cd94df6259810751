"""Committing intake entries in a Redis Cluster, where one entry's effects span slots.

On one server the engine commits a wave in one MULTI/EXEC (``core.leases``). In a
Cluster an entry's effects live in several slots: its conversation's (history, state,
lease, in-flight set, idempotency record), the tickets', its outbound stream's and the
intake stream's. Each entry is therefore committed in four steps, each in one slot:

1. **home**: one WATCHed transaction in the conversation's slot writes that slot's
   effects and the idempotency record, which holds the entry's remaining writes (the
   follow-ups). The WATCH on the record and the lease makes this the single point where
   the entry counts as answered: a second worker cannot pass it.
2. **follow-ups**: each other slot's writes (the reply's XADD, the ticket's hash and
   queues) as one Lua call that first sets a marker in that slot, so each is applied once.
3. **finish**: in the conversation's slot, the entry leaves the in-flight set (only now
   may the conversation's next message be answered, so replies keep their order) and
   the record is marked finished; the lease is released after the batch's last entry.
4. **ack**: XACK and the failure count, in the intake stream's slot.

A crash after step 1 leaves the entry pending; whoever reads it again finds the record
with its follow-ups and runs steps 2 to 4 (:meth:`SlotCommits.finish_later`): the markers
make a follow-up that did run a no-op. Nothing is answered twice and nothing is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError, WatchError

from core import cluster
from core.bus import ENGINE_GROUP, SEEN_TTL_SECONDS
from core.keys import Keys
from core.messages import IncomingMessage

DONE_TTL_SECONDS = SEEN_TTL_SECONDS  # longer than any entry stays in the intake stream

# KEYS[1] = a lease; ARGV[1] = token. Delete it if it is still ours.
RELEASE_ONE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(slots=True)
class EntryChange:
    """One intake entry's effects, written onto a recording pipeline."""

    entry_id: str
    message: IncomingMessage
    pipe: Pipeline
    lease: str = ""  # the lease key the commit must still hold ('' for none)
    release: bool = False  # release the lease after this entry (its batch's last)


def unfinished(record: str | None) -> bool:
    """Whether an idempotency record still holds follow-ups (its commit was cut short)."""
    return bool(record) and str(record).startswith("{")


class SlotCommits:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def commit(self, changes: Sequence[EntryChange], token: str = "") -> tuple[list[str], list[str]]:
        """Commit each change (steps 1-4); returns the entry ids committed and those
        lost (lease gone, or committed by another worker first: nothing written)."""
        homes = await asyncio.gather(*(self._home(c, token) for c in changes))
        done = [(c, groups) for c, groups in zip(changes, homes, strict=True) if groups is not None]
        await asyncio.gather(
            *(
                self._finish(
                    c.entry_id, c.message, groups, (c.lease, token) if c.release and c.lease else None
                )
                for c, groups in done
            )
        )
        await self._ack([c.entry_id for c, _ in done])
        lost = [c.entry_id for c, groups in zip(changes, homes, strict=True) if groups is None]
        return [c.entry_id for c, _ in done], lost

    async def finish_later(self, entries: Sequence[tuple[str, IncomingMessage, str]]) -> None:
        """Steps 2-4 for entries whose home step committed before a crash: ``(entry id,
        message, idempotency record)``."""
        await asyncio.gather(
            *(self._finish(entry_id, m, cluster.decode(record)[0]) for entry_id, m, record in entries)
        )
        await self._ack([entry_id for entry_id, _, _ in entries])

    async def _home(self, change: EntryChange, token: str) -> list[cluster.Group] | None:
        message = change.message
        done = self.keys.done(message.conversation, message.message_id)
        home, groups = cluster.split(cluster.commands(change.pipe), done)
        watched = [done, change.lease] if change.lease else [done]
        async with cluster.on_slot(self.redis, done).pipeline(transaction=True) as pipe:
            await pipe.watch(*watched)
            if change.lease and await pipe.get(change.lease) != token:
                return None
            if await pipe.exists(done):
                return None
            pipe.multi()
            for command in home:
                pipe.execute_command(*command)
            pipe.set(done, cluster.encode(groups, entry=change.entry_id), ex=DONE_TTL_SECONDS)
            try:
                await pipe.execute()
            except WatchError:
                return None
        return groups

    async def _finish(
        self,
        entry_id: str,
        message: IncomingMessage,
        groups: list[cluster.Group],
        release: tuple[str, str] | None = None,
    ) -> None:
        await cluster.apply(self.redis, self.keys, groups, message.message_id)
        conv = message.conversation
        done = self.keys.done(conv, message.message_id)
        async with cluster.on_slot(self.redis, done).pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.inflight(conv), entry_id)
            pipe.set(done, entry_id, ex=DONE_TTL_SECONDS)
            if release is not None:
                pipe.eval(RELEASE_ONE, 1, *release)
            await pipe.execute()

    async def _ack(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        intake = self.keys.intake()
        async with cluster.on_slot(self.redis, intake).pipeline(transaction=False) as pipe:
            pipe.xack(intake, ENGINE_GROUP, *entry_ids)
            pipe.hdel(self.keys.intake_failures(), *entry_ids)
            for result in await pipe.execute(raise_on_error=False):
                # a group that is gone (Redis came back empty) took its entries with it
                if isinstance(result, ResponseError) and "NOGROUP" not in str(result):
                    raise result


__all__ = ["DONE_TTL_SECONDS", "RELEASE_ONE", "EntryChange", "SlotCommits", "unfinished"]
