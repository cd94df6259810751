"""Committing intake entries in a Redis Cluster, where one entry's effects span slots.

On one server the engine commits a wave in one MULTI/EXEC (``core.leases``). In a
Cluster an entry's effects live in several slots: its conversation's (history, state,
lease, in-flight set, idempotency record), the tickets', its outbound stream's and the
intake stream's. Each entry is therefore committed in four steps, each in one slot:

1. **home**: one Lua call in the conversation's slot checks that the lease is still
   this worker's and that no idempotency record exists, then writes that slot's effects
   and the record, which holds the entry's remaining writes (the follow-ups). Being one
   atomic call, this is the single point where the entry counts as answered: a second
   worker cannot pass it.
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
import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from core import cluster
from core.bus import ENGINE_GROUP, SEEN_TTL_SECONDS
from core.keys import Keys
from core.messages import IncomingMessage

DONE_TTL_SECONDS = SEEN_TTL_SECONDS  # longer than any entry stays in the intake stream

# KEYS[1] = the idempotency record, KEYS[2] = the lease, then every key the commands
# touch (declared for the Cluster); ARGV = lease token ('' for no lease check), record
# ttl, the record (with the follow-ups), JSON list of the home slot's commands.
_HOME = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for _, command in ipairs(cjson.decode(ARGV[4])) do
  redis.call(unpack(command))
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
return 1
"""
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
        await self._follow_up([(c.message.message_id, groups) for c, groups in done])
        await asyncio.gather(
            *(
                self._finish(c.entry_id, c.message, (c.lease, token) if c.release and c.lease else None)
                for c, _groups in done
            )
        )
        await self._ack([c.entry_id for c, _ in done])
        lost = [c.entry_id for c, groups in zip(changes, homes, strict=True) if groups is None]
        return [c.entry_id for c, _ in done], lost

    async def finish_later(self, entries: Sequence[tuple[str, IncomingMessage, str]]) -> None:
        """Steps 2-4 for entries whose home step committed before a crash: ``(entry id,
        message, idempotency record)``."""
        todo = [(m.message_id, cluster.decode(record)[0]) for _, m, record in entries]
        await self._follow_up(todo)
        await asyncio.gather(*(self._finish(entry_id, m) for entry_id, m, _ in entries))
        await self._ack([entry_id for entry_id, _, _ in entries])

    async def _home(self, change: EntryChange, token: str) -> list[cluster.Group] | None:
        message = change.message
        done = self.keys.done(message.conversation, message.message_id)
        home, groups = cluster.split(cluster.commands(change.pipe), done)
        touched = list(dict.fromkeys(k for c in home for k in cluster.keys_of(c)))
        record = cluster.encode(groups, entry=change.entry_id)
        committed = await self.redis.eval(
            _HOME,
            2 + len(touched),
            done,
            change.lease or done,
            *touched,
            token if change.lease else "",
            DONE_TTL_SECONDS,
            record,
            json.dumps(home, ensure_ascii=False),
        )
        return groups if int(committed) else None

    async def _follow_up(self, todo: Sequence[tuple[str, Sequence[cluster.Group]]]) -> None:
        """Step 2: every entry's follow-up groups, one Lua call per slot."""
        await cluster.apply(self.redis, self.keys, todo)

    async def _finish(
        self,
        entry_id: str,
        message: IncomingMessage,
        release: tuple[str, str] | None = None,
    ) -> None:
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
