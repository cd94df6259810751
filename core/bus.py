"""The Redis Streams that connect adapters to the engine.

    adapter --submit()--> {ns}:stream:intake --(group "engine")--> Engine
    Engine  --queue_reply()--> {ns}:stream:outbound:{platform} --(group "delivery")--> adapter

Intake is idempotent: ``submit`` claims the platform's event id with SET NX EX and adds
the message in the same Lua call, so a Slack retry or a redelivery after a reconnect is
taken once. The same call records the entry in its conversation's in-flight set, which
``core.leases`` uses to answer each conversation in order across workers (in a Redis
Cluster that set is in the conversation's slot, so it is added right after the call).
Entries are acknowledged only after their work is done; a consumer that dies leaves
them pending, and :meth:`Bus.claim_stale` hands them to another
(``core.upkeep`` calls it on a timer).

Streams are not capped on XADD (a MAXLEN cap would silently drop unread entries under a
backlog); :meth:`Bus.trim` removes only entries every group has read and acknowledged.
A Redis that comes back empty has lost its consumer groups: a NOGROUP reply forgets the
cached group and creates it again, so every loop carries on.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from core import cluster
from core.admission import Admission, Verdict
from core.keys import Keys
from core.messages import IncomingMessage, Reply
from core.retry import retrying

log = logging.getLogger(__name__)

T = TypeVar("T")

ENGINE_GROUP = "engine"
DELIVERY_GROUP = "delivery"
SEEN_TTL_SECONDS = 7 * 24 * 3600
LAG_SCAN_LIMIT = 10_000  # lag counted by XRANGE (Redis < 7) is capped at this
FORGET_PAGE = 500  # entries per XRANGE while erasing a user from the streams
PARTS_SENT_TTL_SECONDS = 7 * 24 * 3600  # outlives any reply left pending (then deleted at XACK)

# KEYS[1] = stream, then the seen key if ARGV[4] has an 's', then the conversation's
# in-flight set if it has an 'i' (core.leases keeps per-conversation order with it);
# ARGV = seen ttl, payload, in-flight ttl, which keys follow the stream
_SUBMIT = """
local n = 1
if string.find(ARGV[4], 's') then
  n = n + 1
  if not redis.call('SET', KEYS[n], '1', 'NX', 'EX', ARGV[1]) then
    return false
  end
end
local id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[2])
if string.find(ARGV[4], 'i') then
  n = n + 1
  local ms, seq = string.match(id, '(%d+)-(%d+)')
  redis.call('ZADD', KEYS[n], tonumber(ms) * 1000 + math.min(tonumber(seq), 999), id)
  redis.call('EXPIRE', KEYS[n], ARGV[3])
end
return id
"""


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One consumer group's view of a stream (for metrics, readiness and trimming)."""

    stream: str
    group: str
    length: int  # entries in the stream
    lag: int  # entries added but not yet delivered to this group
    pending: int  # delivered, not yet acknowledged
    oldest_kept: str  # the oldest entry id this group still needs (pending or unread)


class Bus:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, admission: Admission | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.admission = admission  # backpressure at submit; None: everything is admitted
        self._submit = redis.register_script(_SUBMIT)
        self._groups_ready: set[tuple[str, str]] = set()
        self._pending_cursor: dict[str, str] = {}
        self._rewinds: dict[str, int] = {}  # a rewind during a read must not be lost

    async def ensure_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups_ready:
            return
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add((stream, group))

    async def _in_group(self, stream: str, group: str, command: Callable[[], Awaitable[T]]) -> T:
        """Run ``command`` on a group that exists; after a NOGROUP (Redis restarted
        empty, or the stream was deleted) create the group again and retry once."""
        await self.ensure_group(stream, group)
        try:
            return await command()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning(
                "consumer group %s of %s is gone (Redis restarted empty?); creating it again", group, stream
            )
            self.forget_groups()
            await self.ensure_group(stream, group)
            return await command()

    def forget_groups(self) -> None:
        """Drop the cache of created groups and read cursors (after Redis lost them)."""
        self._groups_ready.clear()
        self._pending_cursor.clear()

    # -- intake ---------------------------------------------------------------------
    async def submit(self, message: IncomingMessage, event_id: str | None = None) -> bool:
        """Queue ``message`` for the engine. Returns False when ``event_id`` was seen
        before (a duplicate delivery), True when the message was queued."""
        keys, which = [self.keys.intake()], ""
        if event_id:
            keys.append(self.keys.seen(message.platform, message.bot_id, event_id))
            which += "s"
        inflight = self.keys.inflight(message.conversation)
        in_one_call = not cluster.is_cluster(self.redis)  # else: another slot, a second step
        if in_one_call:
            keys.append(inflight)
            which += "i"
        entry = await self._submit(
            keys=keys, args=[SEEN_TTL_SECONDS, message.to_json(), SEEN_TTL_SECONDS, which]
        )
        if entry is None:
            return False
        if not in_one_call:
            await self._add_inflight(inflight, str(entry))
        return True

    async def _add_inflight(self, key: str, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {entry_id: entry_score(entry_id)})
            pipe.expire(key, SEEN_TTL_SECONDS)
            await pipe.execute()

    async def admit(self, message: IncomingMessage) -> Verdict:
        """Whether ``message`` may be queued now (``core.admission``): the per-user rate
        limit and the intake backlog bound. Called by adapters before :meth:`submit`."""
        if self.admission is None:
            return Verdict.ADMIT
        return await self.admission.check(message.platform, message.user_id)

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
        pipe.xadd(self.keys.outbound(reply.platform, reply.bot_id), {"data": reply.to_json()})

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

    async def ack_outbound(
        self, platform: str, bot_id: str, entry_ids: Sequence[str], reply_ids: Sequence[str] = ()
    ) -> None:
        """Acknowledge delivered replies, then drop their stored progress (``parts_sent``).
        A crash before the XACK leaves the progress, so the redelivery sends nothing the
        platform already took; one between the two leaves a count that expires."""
        await self._ack(self.keys.outbound(platform, bot_id), DELIVERY_GROUP, entry_ids)
        if reply_ids:  # one slot: the outbound stream's
            await self.redis.delete(*(self.keys.parts_sent(platform, bot_id, r) for r in reply_ids))

    async def parts_sent(self, reply: Reply) -> int:
        """How many parts of ``reply`` the platform already accepted (0 if none)."""
        raw = await self.redis.get(self.keys.parts_sent(reply.platform, reply.bot_id, reply.reply_id))
        return int(raw or 0)

    async def mark_parts_sent(self, reply: Reply, count: int) -> None:
        """Record that the first ``count`` parts of ``reply`` were accepted, so a
        restart or another process resumes after them."""
        key = self.keys.parts_sent(reply.platform, reply.bot_id, reply.reply_id)
        await self.redis.set(key, count, ex=PARTS_SENT_TTL_SECONDS)

    def queue_ack_intake(self, pipe: Any, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            pipe.xack(self.keys.intake(), ENGINE_GROUP, *entry_ids)

    async def ack_intake(self, entry_ids: Sequence[str]) -> None:
        await self._ack(self.keys.intake(), ENGINE_GROUP, entry_ids)

    async def _ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        """Acknowledge; when the group is gone (Redis came back empty) so are the entries,
        and there is nothing left to acknowledge."""
        if not entry_ids:
            return
        try:
            await self.redis.xack(stream, group, *entry_ids)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise

    def rewind(self, stream: str, consumer: str) -> None:
        """Re-read this consumer's pending entries on its next read (after a failure)."""
        key = f"{stream}|{consumer}"
        self._pending_cursor[key] = "0"
        self._rewinds[key] = self._rewinds.get(key, 0) + 1

    # -- forwarding between local-adapter processes ------------------------------------
    async def forward_reply(self, instance: str, reply: Reply) -> bool:
        """Hand ``reply`` to the process ``instance`` (it holds the waiting request);
        False when that process is gone."""
        return int(await self.redis.publish(self.keys.reply_channel(instance), reply.to_json())) > 0

    async def receive_forwarded(self, instance: str, on_reply: Callable[[Reply], Awaitable[None]]) -> None:
        """Call ``on_reply`` for every reply forwarded to ``instance``, until cancelled.
        One connection per process, however many requests wait; a Redis outage is
        waited out and the channel subscribed again."""
        channel = self.keys.reply_channel(instance)
        async for attempt in retrying(f"reply channel {instance}", retry_on=(RedisError, OSError)):
            with attempt:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    while True:  # short waits: a silent channel is not a socket timeout
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message and message.get("type") == "message":
                            await on_reply(Reply.from_json(message["data"]))

    # -- erasure ---------------------------------------------------------------------
    async def forget_user(self, platform: str, user_id: str) -> int:
        """Delete every entry about one user from every stream (intake, each outbound
        stream, any stream under ``{ns}:stream:``): XRANGE in pages of ``FORGET_PAGE``,
        then XACK in every group (no pending list keeps the id) and XDEL; and the user's
        rate-limit window. Returns how many stream entries went."""
        removed = 0
        async for stream in self.redis.scan_iter(match=self.keys.streams(), count=1000, _type="stream"):
            removed += await self._forget_in(stream, platform, user_id)
        if self.admission is not None:  # the rate-limit window names the user too
            await self.admission.forget(platform, user_id)
        # engine processes hold the user's prompts in memory (core.batching.prefix_cache)
        await self.redis.publish(self.keys.forget_channel(), json.dumps([platform, user_id]))
        return removed

    async def follow_forgets(self, on_forget: Callable[[str, str], None]) -> None:
        """Call ``on_forget(platform, user_id)`` for every user ``forget_user`` erases, in
        any process, until cancelled; a Redis outage is waited out and the channel
        subscribed again (a process that was away has nothing cached from before)."""
        channel = self.keys.forget_channel()
        async for attempt in retrying("forget channel", retry_on=(RedisError, OSError)):
            with attempt:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message and message.get("type") == "message":
                            platform, user_id = json.loads(message["data"])
                            on_forget(str(platform), str(user_id))

    async def _forget_in(self, stream: str, platform: str, user_id: str) -> int:
        try:
            groups = [g["name"] for g in await self.redis.xinfo_groups(stream)]
        except ResponseError:  # gone meanwhile
            return 0
        removed, start = 0, "-"
        while True:
            raw: Any = await self.redis.xrange(stream, min=start, max="+", count=FORGET_PAGE)
            page: list[tuple[str, dict[str, str]]] = list(raw or [])
            about = [(entry_id, fields) for entry_id, fields in page if _about(fields, platform, user_id)]
            ids = [entry_id for entry_id, _ in about]
            if ids:
                async with cluster.on_slot(self.redis, stream).pipeline(transaction=True) as pipe:
                    for group in groups:
                        pipe.xack(stream, group, *ids)
                    pipe.xdel(stream, *ids)
                    await pipe.execute()
                if stream == self.keys.intake():  # and out of the in-flight sets (core.leases)
                    await self._forget_inflight(about)
                removed += len(ids)
            if len(page) < FORGET_PAGE:
                return removed
            start = f"({page[-1][0]}"

    async def _forget_inflight(self, entries: Sequence[tuple[str, dict[str, str]]]) -> None:
        """Drop erased intake entries from their conversations' in-flight sets (each set
        is in its user's slot; one left behind is dropped by ``core.leases`` anyway,
        because its entry is no longer in the stream)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, fields in entries:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    conv = IncomingMessage.from_json(fields["data"]).conversation
                    pipe.zrem(self.keys.inflight(conv), entry_id)
            await pipe.execute()

    # -- recovery -------------------------------------------------------------------
    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int = 60_000, count: int = 100
    ) -> list[tuple[str, str]]:
        """Take over entries another consumer read but never acknowledged (it died)."""

        async def claim() -> Any:
            return await self.redis.xautoclaim(
                stream, group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
            )

        _next, entries, *_ = await self._in_group(stream, group, claim)
        return [(entry_id, fields["data"]) for entry_id, fields in entries if fields]

    async def hand_back(self, stream: str, group: str, consumer: str, idle_ms: int) -> int:
        """Make this consumer's pending entries claimable at once (a graceful shutdown
        that could not finish them): their idle time is set to ``idle_ms``, so the next
        :meth:`claim_stale` of any live consumer takes them. Returns how many."""
        pending = await self.redis.xpending_range(stream, group, "-", "+", 10_000, consumername=consumer)
        ids: list[Any] = [p["message_id"] for p in pending]
        if ids:
            await self.redis.xclaim(stream, group, consumer, 0, ids, idle=idle_ms, justid=True)
        return len(ids)

    async def pending_count(self, stream: str, group: str) -> int:
        info = await self._in_group(stream, group, lambda: self.redis.xpending(stream, group))
        return int(info["pending"])

    async def live_consumers(self, stream: str, group: str, max_idle_ms: int) -> list[str]:
        """Consumers of ``group`` that read within ``max_idle_ms`` (a blocking read counts)."""
        try:
            consumers = await self.redis.xinfo_consumers(stream, group)
        except ResponseError:  # no stream or no group yet: nobody is reading
            return []
        return [c["name"] for c in consumers if int(c["idle"]) <= max_idle_ms]

    async def forget_idle_consumers(self, stream: str, group: str, min_idle_ms: int) -> int:
        """Remove consumers that hold nothing and have not read for ``min_idle_ms`` (the
        names of processes that are gone), so the group lists only live ones."""
        removed = 0
        with contextlib.suppress(ResponseError):
            for c in await self.redis.xinfo_consumers(stream, group):
                if int(c["pending"]) == 0 and int(c["idle"]) >= min_idle_ms:
                    await self.redis.xgroup_delconsumer(stream, group, c["name"])
                    removed += 1
        return removed

    # -- bounds ---------------------------------------------------------------------
    async def stats(self, stream: str) -> list[GroupStats]:
        """Length, lag and pending count of every group reading ``stream``."""
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:  # the stream does not exist (yet)
            return []
        length = int(await self.redis.xlen(stream))
        out = []
        for g in groups:
            oldest = _next_id(g["last-delivered-id"])
            if int(g["pending"]):
                summary = await self.redis.xpending(stream, g["name"])
                if summary["min"] is not None:  # not acknowledged meanwhile
                    oldest = min(oldest, summary["min"], key=_id_key)
            lag = g.get("lag")
            if lag is None:  # Redis < 7, or a lag Redis cannot tell after XDEL: count them
                undelivered = await self.redis.xrange(
                    stream, min=_next_id(g["last-delivered-id"]), max="+", count=LAG_SCAN_LIMIT
                )
                lag = len(undelivered or [])
            out.append(
                GroupStats(
                    stream,
                    g["name"],
                    length,
                    int(lag),
                    int(g["pending"]),
                    oldest,
                )
            )
        return out

    async def trim(self, stream: str) -> int:
        """Delete the entries every group has read and acknowledged (XTRIM MINID up to
        the oldest entry any group still needs); never an unread or pending one. A stream
        no group reads yet is left whole. Returns how many entries went."""
        groups = await self.stats(stream)
        if not groups:
            return 0
        keep_from = min((g.oldest_kept for g in groups), key=_id_key)
        return int(await self.redis.xtrim(stream, minid=keep_from, approximate=False))

    async def _read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, str]]:
        return await self._in_group(
            stream, group, lambda: self._read_once(stream, group, consumer, count, block_ms)
        )

    async def _read_once(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, str]]:
        # After a restart, first walk this consumer's own pending entries (read before a
        # crash, never acknowledged) with a moving cursor; then read only new ones.
        cursor_key = f"{stream}|{consumer}"
        cursor = self._pending_cursor.get(cursor_key, "0")
        if cursor != ">":
            rewinds = self._rewinds.get(cursor_key, 0)
            response = await self.redis.xreadgroup(group, consumer, {stream: cursor}, count=count)
            entries = _entries(response)
            if self._rewinds.get(cursor_key, 0) == rewinds:  # else: walk from the start again
                self._pending_cursor[cursor_key] = entries[-1][0] if entries else ">"
            if entries:
                return [(eid, data) for eid, data in entries if data is not None]
        response = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [(eid, data) for eid, data in _entries(response) if data is not None]


def _about(fields: dict[str, str] | None, platform: str, user_id: str) -> bool:
    """Whether a stream entry (a message or a reply, as JSON in a field) is about this user."""
    for value in (fields or {}).values():
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            data = json.loads(value)
            if data.get("platform") == platform and data.get("user_id") == user_id:
                return True
    return False


def entry_score(entry_id: str) -> int:
    """An entry's place in stream order, as ``_SUBMIT`` scores it in the in-flight set."""
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 1000 + min(int(seq or 0), 999)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> str:
    """The smallest id after ``entry_id`` (the first entry a group has not been given)."""
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"


def _entries(response: Any) -> list[tuple[str, str | None]]:
    """Flatten XREADGROUP's reply; a trimmed-away pending entry has no fields."""
    return [
        (entry_id, (fields or {}).get("data"))
        for _stream, items in response or []
        for entry_id, fields in items
    ]
