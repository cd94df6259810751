"""Tickets: a conversation handed to the support team, and who is working on it.

    bot escalates ──> open ──claim──> claimed ──resolve──> resolved
                       ^  <─release──    │                    │
                       └── stale claim taken over ────────────┘ escalates again within
                                                                the reopen window: reopened

A ticket is a Redis hash; per-status sorted sets (scored by newest activity) are the
queue, an append-only list is its audit trail, and the conversation's hand-off key holds
its id while it is open or claimed, which is what keeps the bot quiet. Every change is
one WATCH/MULTI transaction on the ticket's hash, so two agents claiming at once cannot
both win, and an agent's reply is queued on the customer's outbound stream and stored as
an ``agent`` turn in the same transaction. The transcript is not copied into the ticket:
it is the conversation's history, read when asked, so it is always live. In a Redis
Cluster the tickets and their queues share one slot (``{tickets}``), so a change is
still one WATCHed transaction on the ticket; its writes in other slots (the agent's turn
in the history, the reply on the outbound stream, the hand-back) are stored with it as
follow-ups and applied right after, exactly once (``core.cluster``); a process that dies
in between leaves them to :meth:`Tickets.finish_followups`, which the engine runs on its
reminder timer. The record
types (``Ticket``, ``TicketStatus``, ``AuditEntry``, ``TicketEvent``, ``TicketConfig``)
live in :mod:`core.ticket` and are re-exported here.
"""

from __future__ import annotations

import builtins
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, replace
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from core import cluster
from core.bus import Bus
from core.conversation import Conversations
from core.errors import ClaimConflict, TicketNotFound, TicketStateError
from core.history import Turn
from core.keys import Keys
from core.messages import ConversationKey, Reply, Route
from core.retry import Backoff, retrying
from core.ticket import (
    ASK_FOR_PERSON,
    BOT,
    REASONS,
    AuditEntry,
    Ticket,
    TicketConfig,
    TicketEvent,
    TicketStatus,
    ticket_from_hash,
)

T = TypeVar("T")
Clock = Callable[[], float]


class Tickets:
    """The ticket store: what the engine opens and what the desk and CLI work."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        bus: Bus,
        conversations: Conversations,
        config: TicketConfig = TicketConfig(),
        clock: Clock = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.bus = bus
        self.conversations = conversations
        self.config = config
        self.clock = clock

    # -- reading -------------------------------------------------------------------------
    async def get(self, ticket_id: str) -> Ticket:
        data = cast(dict[str, str], await self.redis.hgetall(self.keys.ticket(ticket_id)))
        if not data:
            raise TicketNotFound(f"no ticket {ticket_id!r}")
        return ticket_from_hash(data)

    async def list(
        self,
        *,
        status: TicketStatus | None = None,
        bot_id: str | None = None,
        platform: str | None = None,
        limit: int = 200,
    ) -> builtins.list[Ticket]:
        """Tickets, newest activity first."""
        await self._prune()
        key = self.keys.tickets(status.value if status else "all")
        ids = cast(builtins.list[str], await self.redis.zrevrange(key, 0, -1))
        found: builtins.list[Ticket] = []
        for start in range(0, len(ids), 200):
            for ticket in await self._load(ids[start : start + 200]):
                if (bot_id is None or ticket.bot_id == bot_id) and (
                    platform is None or ticket.platform == platform
                ):
                    found.append(ticket)
                    if len(found) >= limit:
                        return found
        return found

    async def counts(self, *, bot_id: str | None = None, platform: str | None = None) -> dict[str, int]:
        """How many tickets are in each status."""
        await self._prune()
        if bot_id is None and platform is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for s in TicketStatus:
                    pipe.zcard(self.keys.tickets(s.value))
                sizes = await pipe.execute()
            return {s.value: int(n) for s, n in zip(TicketStatus, sizes, strict=True)}
        counts = {s.value: 0 for s in TicketStatus}
        for ticket in await self.list(bot_id=bot_id, platform=platform, limit=10**9):
            counts[ticket.status.value] += 1
        return counts

    async def transcript(self, ticket_id: str) -> builtins.list[Turn]:
        """The whole conversation as stored now, agent turns included."""
        ticket = await self.get(ticket_id)
        history = self.conversations.history
        return await history.recent(ticket.conversation, history.max_turns)

    async def audit(self, ticket_id: str) -> builtins.list[AuditEntry]:
        raw, exists = await self._pipe(
            lambda p: (
                p.lrange(self.keys.ticket_audit(ticket_id), 0, -1),
                p.exists(self.keys.ticket(ticket_id)),
            )
        )
        if not exists:
            raise TicketNotFound(f"no ticket {ticket_id!r}")
        return [AuditEntry(**json.loads(r)) for r in raw]

    async def latest_many(self, convs: Iterable[ConversationKey]) -> dict[ConversationKey, Ticket]:
        """Each conversation's most recent ticket (open, claimed or resolved), if any."""
        convs = list(dict.fromkeys(convs))
        if not convs:
            return {}
        ids = await cluster.get_many(self.redis, [self.keys.conversation_ticket(c) for c in convs])
        pairs = [(c, str(i)) for c, i in zip(convs, ids, strict=True) if i]
        tickets = {t.id: t for t in await self._load([i for _c, i in pairs])}
        return {c: tickets[i] for c, i in pairs if i in tickets}

    # -- agents' actions -------------------------------------------------------------------
    async def claim(self, ticket_id: str, agent: str) -> Ticket:
        """Take the ticket; a claim whose agent has been idle too long is taken over."""

        def change(pipe: Any, ticket: Ticket, data: dict[str, str], now: float) -> Ticket:
            _require_agent(agent)
            if ticket.status is TicketStatus.RESOLVED:
                raise TicketStateError(
                    f"ticket {ticket.id} is resolved; it reopens if the customer escalates again"
                )
            if ticket.status is TicketStatus.CLAIMED and ticket.assignee == agent:
                self._touch(pipe, ticket, now)
                return ticket
            action, detail = self._check_holder(ticket, data, agent, now, "claim")
            return self._claim(pipe, ticket, agent, now, action, detail)

        return await self._change(ticket_id, change)

    async def release(self, ticket_id: str, agent: str) -> Ticket:
        """Give the ticket back to the queue."""

        def change(pipe: Any, ticket: Ticket, data: dict[str, str], now: float) -> Ticket:
            if ticket.status is not TicketStatus.CLAIMED:
                raise TicketStateError(f"ticket {ticket.id} is {ticket.status.value}, not claimed")
            _require_agent(agent)
            detail = f"released by {agent}"
            if ticket.assignee != agent:
                _action, took = self._check_holder(ticket, data, agent, now, "release")
                detail = f"{detail}; {took}"
            return self._set_open(pipe, ticket, now, agent, "released", detail)

        return await self._change(ticket_id, change)

    async def reply(self, ticket_id: str, agent: str, text: str) -> Turn:
        """Send ``text`` to the customer on their platform and store it as an agent turn.

        Replying to an open ticket claims it for ``agent`` first.
        """
        text = text.strip()

        def change(pipe: Any, ticket: Ticket, data: dict[str, str], now: float) -> Turn:
            _require_agent(agent)
            if not text:
                raise TicketStateError("a reply needs some text")
            if ticket.status is TicketStatus.RESOLVED:
                raise TicketStateError(f"ticket {ticket.id} is resolved; the bot has the conversation again")
            if ticket.assignee != agent:
                action, detail = self._check_holder(ticket, data, agent, now, "reply to")
                ticket = self._claim(pipe, ticket, agent, now, action, detail)
            turn = Turn(role="agent", text=text, timestamp=now, display_name=agent)
            self._send(pipe, ticket, text, now, meta={"agent": agent})
            self.conversations.queue_turns(pipe, ticket.conversation, [turn])
            self._touch(pipe, ticket, now)
            self._audit(pipe, ticket.id, now, agent, "replied", _preview(text))
            self._publish(pipe, ticket.id, "replied", now)
            return turn

        return await self._change(ticket_id, change)

    async def resolve(self, ticket_id: str, agent: str) -> Ticket:
        """Close the ticket and hand the conversation back to the bot."""

        def change(pipe: Any, ticket: Ticket, data: dict[str, str], now: float) -> Ticket:
            _require_agent(agent)
            if ticket.status is TicketStatus.RESOLVED:
                raise TicketStateError(f"ticket {ticket.id} is already resolved")
            if ticket.assignee and ticket.assignee != agent:
                self._check_holder(ticket, data, agent, now, "resolve")
            key = self.keys.ticket(ticket.id)
            pipe.hset(
                key, mapping={"status": "resolved", "resolved_at": now, "updated_at": now, "remind_at": ""}
            )
            self._index(pipe, ticket.id, TicketStatus.RESOLVED, now)
            pipe.zrem(self.keys.ticket_reminders(), ticket.id)
            self.conversations.queue_hand_back(pipe, ticket.conversation)
            pipe.expire(key, self.config.ttl_seconds)
            pipe.expire(self.keys.ticket_audit(ticket.id), self.config.ttl_seconds)
            self._audit(pipe, ticket.id, now, agent, "resolved", "the bot answers this conversation again")
            self._publish(pipe, ticket.id, "resolved", now)
            return replace(ticket, status=TicketStatus.RESOLVED, resolved_at=now, updated_at=now)

        return await self._change(ticket_id, change)

    async def subscribe(self) -> AsyncIterator[TicketEvent]:
        """Ticket events as they happen (Redis pub/sub: live, nothing replayed)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.keys.ticket_events())
        try:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield TicketEvent.from_json(message["data"])
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()

    # -- the engine's side -----------------------------------------------------------------
    def queue_open(
        self,
        pipe: Any,
        conv: ConversationKey,
        *,
        previous: Ticket | None,
        reason: str,
        detail: str,
        intent: str = "",
        confidence: float = 0.0,
        display_name: str = "",
        meta: dict[str, str] | None = None,
    ) -> tuple[str, str]:
        """Add the commands that hand ``conv`` to the team to an open transaction.

        ``previous`` is the conversation's latest ticket (:meth:`latest_many`): if it was
        resolved within the reopen window it is reopened instead of opening a new one.
        Returns the ticket id and the event kind (``opened`` or ``reopened``).
        """
        if reason not in REASONS:
            raise ValueError(f"unknown ticket reason {reason!r}")
        now = self.clock()
        fields: dict[str, Any] = {
            "reason": reason,
            "detail": detail,
            "intent": intent,
            "confidence": confidence,
            "display_name": display_name or (previous.display_name if previous else ""),
            "meta": json.dumps(meta or {}),
        }
        if previous is not None and previous.held:
            return previous.id, "message"  # already with the team; nothing to open
        recent = previous is not None and now - (previous.resolved_at or 0.0) <= self.config.reopen_window_s
        if previous is not None and recent:
            ticket_id, kind = previous.id, "reopened"
            pipe.hset(self.keys.ticket(ticket_id), mapping=fields)
            pipe.persist(self.keys.ticket(ticket_id))
            pipe.persist(self.keys.ticket_audit(ticket_id))
            audit = f"escalated again: {detail}"
        else:
            ticket_id, kind = uuid.uuid4().hex[:16], "opened"
            pipe.hset(
                self.keys.ticket(ticket_id),
                mapping={
                    "id": ticket_id,
                    **dict(zip(("bot_id", "platform", "chat_id", "user_id"), conv.parts(), strict=True)),
                    "created_at": now,
                    **fields,
                },
            )
            audit = f"{reason}: {detail}"
        self._set_open_fields(pipe, ticket_id, now)
        pipe.hset(self.keys.ticket(ticket_id), "acknowledged", "")
        self.conversations.queue_hand_off(pipe, conv, ticket_id)
        pipe.set(self.keys.conversation_ticket(conv), ticket_id, ex=self.config.ttl_seconds)
        index = self.keys.user_index(conv.platform, conv.user_id)
        pipe.sadd(
            index,
            self.keys.ticket(ticket_id),
            self.keys.ticket_audit(ticket_id),
            self.keys.conversation_ticket(conv),
        )
        self._audit(pipe, ticket_id, now, BOT, kind, audit)
        self._publish(pipe, ticket_id, kind, now)
        return ticket_id, kind

    def queue_customer_message(
        self, pipe: Any, ticket: Ticket, *, acknowledged: bool, meta: dict[str, str]
    ) -> None:
        """Record that the customer wrote on a held conversation (their turn itself goes
        to history): newest activity, where to deliver replies, and a live event."""
        now = self.clock()
        mapping: dict[str, Any] = {"updated_at": now, "meta": json.dumps(meta)}
        if acknowledged:
            mapping["acknowledged"] = "1"
        pipe.hset(self.keys.ticket(ticket.id), mapping=mapping)
        self._bump(pipe, ticket.id, now)
        self._publish(pipe, ticket.id, "message", now)

    async def due_reminders(self, limit: int = 100) -> builtins.list[Ticket]:
        """Open tickets whose customer is due a "still waiting" line."""
        due = [
            str(i)
            for i in await self.redis.zrangebyscore(
                self.keys.ticket_reminders(), "-inf", self.clock(), start=0, num=limit
            )
        ]
        tickets = await self._load(due)
        gone = set(due) - {t.id for t in tickets}  # erased with their user meanwhile
        if gone:
            await self.redis.zrem(self.keys.ticket_reminders(), *gone)
        return tickets

    async def remind(self, ticket_id: str, text: str) -> bool:
        """Tell the customer of an unclaimed ticket that they are still in the queue;
        False when it is no longer due (claimed meanwhile, or reminded already)."""

        def change(pipe: Any, ticket: Ticket, data: dict[str, str], now: float) -> bool:
            due = data.get("remind_at") or ""
            if ticket.status is not TicketStatus.OPEN or not due or float(due) > now:
                if ticket.status is not TicketStatus.OPEN:
                    pipe.zrem(self.keys.ticket_reminders(), ticket.id)
                return False
            self._send(pipe, ticket, text, now)
            turn = Turn(role="bot", text=text, timestamp=now, route=Route.HUMAN.value)
            self.conversations.queue_turns(pipe, ticket.conversation, [turn])
            self._schedule_reminder(pipe, ticket.id, now + self.config.reminder_interval_s)
            self._audit(
                pipe, ticket.id, now, BOT, "reminded", "told the customer they are still in the queue"
            )
            self._publish(pipe, ticket.id, "reminded", now)
            return True

        try:
            return await self._change(ticket_id, change)
        except TicketNotFound:
            await self.redis.zrem(self.keys.ticket_reminders(), ticket_id)
            return False

    # -- internals ---------------------------------------------------------------------------
    async def _change(self, ticket_id: str, change: Callable[[Any, Ticket, dict[str, str], float], T]) -> T:
        """Run ``change`` in one WATCH/MULTI transaction on the ticket; a concurrent
        change to the same ticket makes it start over with the new state. In a Cluster
        the writes outside the tickets' slot become follow-ups (module docstring)."""
        key = self.keys.ticket(ticket_id)
        in_slots = cluster.is_cluster(self.redis)
        async for attempt in retrying(
            f"ticket {ticket_id}", retry_on=(WatchError,), backoff=Backoff(first=0.001, cap=0.05, jitter=0.01)
        ):
            with attempt:
                async with cluster.on_slot(self.redis, key).pipeline(transaction=True) as pipe:
                    await pipe.watch(key)
                    data = cast(dict[str, str], await pipe.hgetall(key))
                    if not data:
                        raise TicketNotFound(f"no ticket {ticket_id!r}; see `chatbot escalations list`")
                    pipe.multi()
                    writes = cluster.recorder() if in_slots else pipe
                    result = change(writes, ticket_from_hash(data), data, self.clock())
                    groups: builtins.list[cluster.Group] = []
                    change_id = uuid.uuid4().hex
                    if in_slots:
                        home, groups = cluster.split(cluster.commands(writes), key)
                        for command in home:
                            pipe.execute_command(*command)
                        if groups:
                            pipe.hset(
                                self.keys.ticket_followups(),
                                change_id,
                                cluster.encode(groups, at=self.clock()),
                            )
                    await pipe.execute()
                if groups:
                    await self._apply_followups(change_id, groups)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apply_followups(self, change_id: str, groups: builtins.list[cluster.Group]) -> None:
        await cluster.apply(self.redis, self.keys, [(change_id, groups)])
        await self.redis.hdel(self.keys.ticket_followups(), change_id)

    async def finish_followups(self, min_age_s: float = 10.0) -> int:
        """Apply the follow-ups of ticket changes whose process stopped before it did
        (Cluster only; older than ``min_age_s``, so live ones are left to their process).
        Returns how many changes were finished."""
        if not cluster.is_cluster(self.redis):
            return 0
        pending = cast(dict[str, str], await self.redis.hgetall(self.keys.ticket_followups()))
        finished = 0
        for change_id, record in pending.items():
            groups, extra = cluster.decode(record)
            if self.clock() - float(extra.get("at", 0)) >= min_age_s:
                await self._apply_followups(change_id, groups)
                finished += 1
        return finished

    def _check_holder(
        self, ticket: Ticket, data: dict[str, str], agent: str, now: float, what: str
    ) -> tuple[str, str]:
        """Whether ``agent`` may act on a ticket someone else may hold: returns the audit
        action and detail for taking it, or raises ClaimConflict."""
        if ticket.status is not TicketStatus.CLAIMED or not ticket.assignee or ticket.assignee == agent:
            return "claimed", f"claimed by {agent}"
        idle = now - float(data.get("active_at") or ticket.claimed_at or 0.0)
        if idle < self.config.claim_timeout_s:
            raise ClaimConflict(
                f"ticket {ticket.id} is claimed by {ticket.assignee} (active {_ago(idle)} ago); "
                f"you can {what} it after {_ago(self.config.claim_timeout_s)} of inactivity"
            )
        return "takeover", f"{agent} took over from {ticket.assignee}, inactive for {_ago(idle)}"

    def _claim(self, pipe: Any, ticket: Ticket, agent: str, now: float, action: str, detail: str) -> Ticket:
        key = self.keys.ticket(ticket.id)
        pipe.hset(
            key,
            mapping={
                "status": "claimed",
                "assignee": agent,
                "claimed_at": now,
                "active_at": now,
                "updated_at": now,
                "remind_at": "",
            },
        )
        self._index(pipe, ticket.id, TicketStatus.CLAIMED, now)
        pipe.zrem(self.keys.ticket_reminders(), ticket.id)
        self._audit(pipe, ticket.id, now, agent, action, detail)
        self._publish(pipe, ticket.id, "claimed", now)
        return replace(ticket, status=TicketStatus.CLAIMED, assignee=agent, claimed_at=now, updated_at=now)

    def _set_open(
        self, pipe: Any, ticket: Ticket, now: float, actor: str, action: str, detail: str
    ) -> Ticket:
        self._set_open_fields(pipe, ticket.id, now)
        self._audit(pipe, ticket.id, now, actor, action, detail)
        self._publish(pipe, ticket.id, action, now)
        return replace(ticket, status=TicketStatus.OPEN, assignee="", claimed_at=None, updated_at=now)

    def _set_open_fields(self, pipe: Any, ticket_id: str, now: float) -> None:
        pipe.hset(
            self.keys.ticket(ticket_id),
            mapping={
                "status": "open",
                "assignee": "",
                "claimed_at": "",
                "resolved_at": "",
                "active_at": "",
                "updated_at": now,
            },
        )
        self._index(pipe, ticket_id, TicketStatus.OPEN, now)
        self._schedule_reminder(pipe, ticket_id, now + self.config.reminder_interval_s)

    def _schedule_reminder(self, pipe: Any, ticket_id: str, at: float) -> None:
        pipe.hset(self.keys.ticket(ticket_id), "remind_at", at)
        pipe.zadd(self.keys.ticket_reminders(), {ticket_id: at})

    def _touch(self, pipe: Any, ticket: Ticket, now: float) -> None:
        """The assignee acted: their claim is fresh again."""
        pipe.hset(self.keys.ticket(ticket.id), mapping={"active_at": now, "updated_at": now})
        self._bump(pipe, ticket.id, now)

    def _index(self, pipe: Any, ticket_id: str, status: TicketStatus, now: float) -> None:
        for s in TicketStatus:
            if s is status:
                pipe.zadd(self.keys.tickets(s.value), {ticket_id: now})
            else:
                pipe.zrem(self.keys.tickets(s.value), ticket_id)
        pipe.zadd(self.keys.tickets("all"), {ticket_id: now})

    def _bump(self, pipe: Any, ticket_id: str, now: float) -> None:
        """Move the ticket to the top of whichever queue it is in."""
        for name in (*(s.value for s in TicketStatus), "all"):
            pipe.zadd(self.keys.tickets(name), {ticket_id: now}, xx=True)

    def _send(
        self, pipe: Any, ticket: Ticket, text: str, now: float, meta: dict[str, str] | None = None
    ) -> None:
        """Queue ``text`` on the customer's platform's outbound stream, as the bot does."""
        reply = Reply(
            bot_id=ticket.bot_id,
            platform=ticket.platform,
            chat_id=ticket.chat_id,
            user_id=ticket.user_id,
            text=text,
            route=Route.HUMAN,
            meta={**ticket.meta, **(meta or {})},
            timestamp=now,
        )
        self.bus.queue_reply(pipe, reply)

    def _audit(self, pipe: Any, ticket_id: str, now: float, actor: str, action: str, detail: str) -> None:
        entry = AuditEntry(at=now, actor=actor, action=action, detail=detail)
        pipe.rpush(self.keys.ticket_audit(ticket_id), json.dumps(asdict(entry), ensure_ascii=False))

    def _publish(self, pipe: Any, ticket_id: str, kind: str, now: float) -> None:
        pipe.publish(self.keys.ticket_events(), TicketEvent(ticket_id, kind, now).to_json())

    async def _load(self, ids: builtins.list[str]) -> builtins.list[Ticket]:
        if not ids:
            return []
        rows = await self._pipe(lambda p: tuple(p.hgetall(self.keys.ticket(i)) for i in ids))
        return [ticket_from_hash(row) for row in rows if row]

    async def _prune(self) -> None:
        """Drop ids of resolved tickets that have expired from the indexes."""
        cutoff = self.clock() - self.config.ttl_seconds
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in (TicketStatus.RESOLVED.value, "all"):
                pipe.zremrangebyscore(self.keys.tickets(name), "-inf", cutoff)
            await pipe.execute()

    async def _pipe(self, queue: Callable[[Any], tuple[Awaitable[Any] | Any, ...]]) -> builtins.list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            queue(pipe)
            return list(await pipe.execute())


def _require_agent(agent: str) -> None:
    if not agent.strip() or agent == BOT:
        raise TicketStateError(f"an agent name is required (not {agent!r})")


def _preview(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "ASK_FOR_PERSON",
    "BOT",
    "REASONS",
    "AuditEntry",
    "Ticket",
    "TicketConfig",
    "TicketEvent",
    "TicketStatus",
    "Tickets",
]
