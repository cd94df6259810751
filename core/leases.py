"""At-least-once processing, exactly-once effects: what the engine checks before it
answers an intake entry and writes when it commits one.

- **Idempotency records.** The commit transaction writes ``done:{message_id}`` (with a
  TTL) next to the history turns and the reply; before the models run, one pipeline
  looks the whole batch up, and an entry already committed (a redelivery after a crash
  between commit and XACK, or an entry claimed from a worker that was only slow) is just
  acknowledged. The commit WATCHes those records, so two workers racing on one entry
  cannot both commit it.
- **Order per conversation.** ``Bus.submit`` adds every entry to its conversation's
  in-flight set (scored in stream order) and the commit removes it: an entry is taken
  only when no older entry of its conversation is still in flight, wherever that one is
  pending (another worker's batch, a dead worker's pending list).
- **One worker per conversation.** A lease (``SET NX PX`` with a random token) is taken
  for each conversation of a batch, renewed while the batch runs and released (only by
  its holder) in the commit. A conversation whose lease another worker holds, or that
  waits for an older entry, is left pending with all its later entries of the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from core.bus import SEEN_TTL_SECONDS, Bus
from core.keys import Keys
from core.messages import ConversationKey, IncomingMessage

DONE_TTL_SECONDS = SEEN_TTL_SECONDS  # longer than any entry stays in the intake stream

# KEYS = lease keys; ARGV[1] = token, ARGV[2] = ttl ms. Renew the leases still ours.
_RENEW = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    n = n + 1
  end
end
return n
"""
# KEYS = lease keys; ARGV[1] = token. Delete the leases still ours.
_RELEASE = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""


class LeaseLost(Exception):
    """A conversation's lease expired during the batch, or another worker committed one
    of its entries first: this batch's remaining work is dropped, its entries stay
    pending and are looked at again (they are then found committed, or answered)."""


def entry_score(entry_id: str) -> int:
    """An entry's place in stream order, as ``Bus.submit``'s Lua scores it."""
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 1000 + min(int(seq or 0), 999)


@dataclass(slots=True)
class Admission:
    """What a batch may do now."""

    token: str
    take: list[tuple[str, IncomingMessage]] = field(default_factory=list)  # answer these
    done: list[str] = field(default_factory=list)  # committed before: acknowledge only
    deferred: list[str] = field(default_factory=list)  # left pending for later
    leases: dict[ConversationKey, str] = field(default_factory=dict)  # conversation -> lease key
    last_entry: dict[ConversationKey, str] = field(default_factory=dict)  # its last entry taken


class Guard:
    """Admission, lease upkeep and the commit's checks for one engine."""

    def __init__(self, redis: aioredis.Redis, bus: Bus, *, lease_ms: int) -> None:
        self.redis = redis
        self.keys: Keys = bus.keys
        self.lease_ms = lease_ms
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self.lock = asyncio.Lock()  # a renewal never lands between a commit's WATCH and EXEC

    async def admit(self, batch: Sequence[tuple[str, IncomingMessage]]) -> Admission:
        """Split ``batch`` into entries to answer now (their leases taken), entries
        already committed, and entries left pending (conversation busy or behind)."""
        admission = Admission(token=secrets.token_hex(8))
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, message in batch:
                pipe.exists(self.keys.done(message.dedup_id))
                pipe.zcount(self.keys.inflight(message.conversation), "-inf", f"({entry_score(entry_id)}")
            looked = await pipe.execute()
        blocked: dict[ConversationKey, str] = {}  # conversation -> its first entry deferred
        taken: dict[ConversationKey, int] = {}
        candidates: list[tuple[str, IncomingMessage]] = []
        for n, (entry_id, message) in enumerate(batch):
            done, older = int(looked[2 * n]), int(looked[2 * n + 1])
            conv = message.conversation
            if done:
                admission.done.append(entry_id)
            elif conv in blocked or older > taken.get(conv, 0):  # an older entry is elsewhere
                blocked.setdefault(conv, entry_id)
                admission.deferred.append(entry_id)
            else:
                taken[conv] = taken.get(conv, 0) + 1
                candidates.append((entry_id, message))
        if blocked:
            await self._forget_vanished(blocked)
        convs = list(taken)
        async with self.redis.pipeline(transaction=False) as pipe:
            for conv in convs:
                pipe.set(self.keys.lease(conv), admission.token, nx=True, px=self.lease_ms)
            got = await pipe.execute()
        for conv, ok in zip(convs, got, strict=True):
            if ok:
                admission.leases[conv] = self.keys.lease(conv)
        for entry_id, message in candidates:
            if message.conversation in admission.leases:
                admission.take.append((entry_id, message))
                admission.last_entry[message.conversation] = entry_id
            else:
                admission.deferred.append(entry_id)
        return admission

    async def _forget_vanished(self, blocked: dict[ConversationKey, str]) -> None:
        """Drop in-flight ids older than a deferred entry that are no longer in the intake
        stream (deleted by hand, say), so they cannot hold their conversation forever."""
        intake = self.keys.intake()
        for conv, entry_id in blocked.items():
            key = self.keys.inflight(conv)
            ids: Any = await self.redis.zrangebyscore(key, "-inf", f"({entry_score(entry_id)}")  # str ids
            for older in ids:
                if not await self.redis.xrange(intake, older, older):
                    await self.redis.zrem(key, older)

    @contextlib.asynccontextmanager
    async def holding(self, admission: Admission) -> AsyncIterator[None]:
        """Renew the batch's leases while it runs; release what the commits did not."""
        task = asyncio.create_task(self._keep(admission)) if admission.leases else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if admission.leases:
                await self._release(keys=list(admission.leases.values()), args=[admission.token])

    async def _keep(self, admission: Admission) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            async with self.lock:
                await self._renew(keys=list(admission.leases.values()), args=[admission.token, self.lease_ms])

    @contextlib.asynccontextmanager
    async def commit(
        self, admission: Admission, entries: Sequence[tuple[str, IncomingMessage]]
    ) -> AsyncIterator[Any]:
        """The commit transaction of ``entries``: yields a pipeline in MULTI for the
        caller's writes, adds the idempotency records and lease releases, and executes.
        It WATCHes the records and leases: :class:`LeaseLost` when a lease lapsed or
        another worker committed one of the messages first (nothing is written then)."""
        messages = [m for _, m in entries]
        convs = sorted({m.conversation for m in messages}, key=lambda c: c.parts())
        done_keys = [self.keys.done(m.dedup_id) for m in messages]
        lease_keys = [admission.leases[c] for c in convs]
        async with self.lock, self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*done_keys, *lease_keys)
            tokens = await pipe.mget(lease_keys)
            if any(t != admission.token for t in tokens):
                raise LeaseLost("a conversation's lease lapsed during the batch")
            if await pipe.exists(*done_keys):
                raise LeaseLost("another worker committed one of these messages")
            pipe.multi()
            yield pipe
            released = self._queue_finish(pipe, admission, entries)
            try:
                await pipe.execute()
            except WatchError as exc:
                raise LeaseLost("a watched key changed before the commit") from exc
        for conv in released:
            admission.leases.pop(conv, None)

    def _queue_finish(
        self, pipe: Any, admission: Admission, entries: Sequence[tuple[str, IncomingMessage]]
    ) -> list[ConversationKey]:
        """The idempotency records, the entries out of their in-flight sets, their
        failure counts cleared, and the leases of the conversations finished."""
        released = []
        for entry_id, message in entries:
            conv = message.conversation
            pipe.set(self.keys.done(message.dedup_id), entry_id, ex=DONE_TTL_SECONDS)
            pipe.zrem(self.keys.inflight(conv), entry_id)
            pipe.hdel(self.keys.intake_failures(), entry_id)
            if admission.last_entry.get(conv) == entry_id and conv in admission.leases:
                pipe.eval(_RELEASE, 1, admission.leases[conv], admission.token)
                released.append(conv)
        return released


__all__ = ["DONE_TTL_SECONDS", "Admission", "Guard", "LeaseLost", "entry_score"]
