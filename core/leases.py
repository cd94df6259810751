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

On one server a wave commits in one MULTI/EXEC; in a Redis Cluster each entry commits
in its conversation's slot first and then in the other slots (``core.commits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from core import cluster
from core.bus import Bus, entry_score
from core.commits import DONE_TTL_SECONDS, EntryChange, SlotCommits, unfinished
from core.keys import Keys
from core.messages import ConversationKey, IncomingMessage

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


@dataclass(slots=True)
class Admission:
    """What a batch may do now."""

    token: str
    take: list[tuple[str, IncomingMessage]] = field(default_factory=list)  # answer these
    done: list[str] = field(default_factory=list)  # committed before: acknowledge only
    # committed before, follow-ups not yet applied everywhere (Cluster): (id, message, record)
    unfinished: list[tuple[str, IncomingMessage, str]] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # left pending for later
    leases: dict[ConversationKey, str] = field(default_factory=dict)  # conversation -> lease key
    last_entry: dict[ConversationKey, str] = field(default_factory=dict)  # its last entry taken


class Guard:
    """Admission, lease upkeep and the commit's checks for one engine."""

    def __init__(self, redis: aioredis.Redis, bus: Bus, *, lease_ms: int) -> None:
        self.redis = redis
        self.keys: Keys = bus.keys
        self.bus = bus
        self.lease_ms = lease_ms
        self.slots = SlotCommits(redis, bus.keys) if cluster.is_cluster(redis) else None
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self.lock = asyncio.Lock()  # a renewal never lands between a commit's WATCH and EXEC

    async def admit(self, batch: Sequence[tuple[str, IncomingMessage]]) -> Admission:
        """Split ``batch`` into entries to answer now (their leases taken), entries
        already committed, and entries left pending (conversation busy or behind)."""
        admission = Admission(token=secrets.token_hex(8))
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, message in batch:
                pipe.get(self.keys.done(message.conversation, message.message_id))
                pipe.zcount(self.keys.inflight(message.conversation), "-inf", f"({entry_score(entry_id)}")
            looked = await pipe.execute()
        blocked: dict[ConversationKey, str] = {}  # conversation -> its first entry deferred
        taken: dict[ConversationKey, int] = {}
        candidates: list[tuple[str, IncomingMessage]] = []
        for n, (entry_id, message) in enumerate(batch):
            record, older = looked[2 * n], int(looked[2 * n + 1])
            conv = message.conversation
            if unfinished(record):
                admission.unfinished.append((entry_id, message, str(record)))
            elif record:
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
        stream (deleted by hand, say), so they cannot hold their conversation forever. In
        a Cluster also those already committed: there ``Bus.submit`` adds an id to the
        set one step after the XADD, so a very quick commit may remove it before."""
        intake = self.keys.intake()
        for conv, entry_id in blocked.items():
            key = self.keys.inflight(conv)
            ids: Any = await self.redis.zrangebyscore(key, "-inf", f"({entry_score(entry_id)}")  # str ids
            for older in ids:
                found: Any = await self.redis.xrange(intake, older, older)
                if not found or (self.slots is not None and await self._finished(found[0][1], older)):
                    await self.redis.zrem(key, older)

    async def _finished(self, fields: dict[str, str], entry_id: str) -> bool:
        message = IncomingMessage.from_json(fields["data"])
        return await self.redis.get(self.keys.done(message.conversation, message.message_id)) == entry_id

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
            for leases in cluster.by_slot(self.redis, admission.leases.values()):
                await self._release(keys=leases, args=[admission.token])

    async def _keep(self, admission: Admission) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            await self.renew(admission)

    async def renew(self, admission: Admission) -> None:
        """Extend the batch's leases that are still its own (one script per slot)."""
        async with self.lock:
            for leases in cluster.by_slot(self.redis, admission.leases.values()):
                await self._renew(keys=leases, args=[admission.token, self.lease_ms])

    async def finish_later(self, admission: Admission) -> None:
        """Complete the entries whose commit was cut short after its first step
        (Cluster only: a single server commits everything in one transaction)."""
        if admission.unfinished and self.slots is not None:
            await self.slots.finish_later(admission.unfinished)

    @contextlib.asynccontextmanager
    async def commit(
        self, admission: Admission, entries: Sequence[tuple[str, IncomingMessage]]
    ) -> AsyncIterator[Callable[[str], Any]]:
        """The commit of ``entries``: yields ``pipe_for(entry_id)``, the pipeline that
        entry's writes go on; on exit it adds the idempotency records, lease releases and
        XACKs and commits. On one server that is one transaction, which WATCHes the
        records and leases; in a Cluster each entry commits in its own slots
        (``core.commits``). :class:`LeaseLost` when a lease lapsed or another worker
        committed one of the messages first (that entry's writes are dropped)."""
        if self.slots is not None:
            async with self._commit_in_slots(admission, entries) as pipe_for:
                yield pipe_for
            return
        messages = [m for _, m in entries]
        convs = sorted({m.conversation for m in messages}, key=lambda c: c.parts())
        done_keys = [self.keys.done(m.conversation, m.message_id) for m in messages]
        lease_keys = [admission.leases[c] for c in convs]
        async with self.lock, self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*done_keys, *lease_keys)
            tokens = await pipe.mget(lease_keys)
            if any(t != admission.token for t in tokens):
                raise LeaseLost("a conversation's lease lapsed during the batch")
            if await pipe.exists(*done_keys):
                raise LeaseLost("another worker committed one of these messages")
            pipe.multi()
            yield lambda _entry_id: pipe
            released = self._queue_finish(pipe, admission, entries)
            self.bus.queue_ack_intake(pipe, [entry_id for entry_id, _ in entries])
            try:
                await pipe.execute()
            except WatchError as exc:
                raise LeaseLost("a watched key changed before the commit") from exc
        for conv in released:
            admission.leases.pop(conv, None)

    @contextlib.asynccontextmanager
    async def _commit_in_slots(
        self, admission: Admission, entries: Sequence[tuple[str, IncomingMessage]]
    ) -> AsyncIterator[Callable[[str], Any]]:
        assert self.slots is not None
        changes = {
            entry_id: EntryChange(
                entry_id,
                message,
                cluster.recorder(),
                lease=admission.leases.get(message.conversation, ""),
                release=admission.last_entry.get(message.conversation) == entry_id,
            )
            for entry_id, message in entries
        }
        yield lambda entry_id: changes[entry_id].pipe
        async with self.lock:
            committed, lost = await self.slots.commit(list(changes.values()), admission.token)
        for entry_id in committed:
            change = changes[entry_id]
            if change.release:
                admission.leases.pop(change.message.conversation, None)
        if lost:
            raise LeaseLost(f"{len(lost)} entries: lease lapsed or committed elsewhere first")

    def _queue_finish(
        self, pipe: Any, admission: Admission, entries: Sequence[tuple[str, IncomingMessage]]
    ) -> list[ConversationKey]:
        """The idempotency records, the entries out of their in-flight sets, their
        failure counts cleared, and the leases of the conversations finished."""
        released = []
        for entry_id, message in entries:
            conv = message.conversation
            pipe.set(self.keys.done(conv, message.message_id), entry_id, ex=DONE_TTL_SECONDS)
            pipe.zrem(self.keys.inflight(conv), entry_id)
            pipe.hdel(self.keys.intake_failures(), entry_id)
            if admission.last_entry.get(conv) == entry_id and conv in admission.leases:
                pipe.eval(_RELEASE, 1, admission.leases[conv], admission.token)
                released.append(conv)
        return released


__all__ = ["DONE_TTL_SECONDS", "Admission", "Guard", "LeaseLost", "entry_score"]
