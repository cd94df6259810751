"""The conversation engine: intake stream in, replies out, history kept.

For each batch read from the intake stream (consumer group ``engine``):

1. messages are grouped into *waves*: the n-th message of every conversation in the
   batch goes into wave n, so two quick messages from one user are answered in order,
   the second seeing the first in its history, while different users share a batch;
2. per wave, one pipeline reads each conversation's state (recent turns, hand-off flag,
   unsure-turn streak: ``core.conversation``); the classifier runs once over the
   messages whose route depends on it, ``core.router`` decides every route, the LM
   writes all ``generate`` replies as one batch, and the router's second step turns an
   empty or failed generation into a visible ``rephrase`` or ``unavailable``;
3. one transaction per wave appends the user and bot turns, updates the state, opens
   or reopens tickets, queues the replies on each platform's outbound stream, writes
   each message's idempotency record and acknowledges the intake entries; a crash
   before it leaves the entries pending, so nothing is lost. (In a Redis Cluster each
   entry commits slot by slot instead, as exactly-once: ``core.commits``.)

Processing is at-least-once, effects exactly-once (``core.leases``): before the models
run, entries already committed are only acknowledged, and each conversation of the
batch is leased to this worker, so no other worker answers it meanwhile and its entries
are answered in order. A batch that fails is tried again entry by entry; an entry that
fails ``max_attempts`` times goes to the dead letters (``core.dead_letters``) and its
customer gets the persona's "unavailable" text.

While the support team holds a conversation (``core.tickets``) the bot only stores the
customer's messages (the ticket's live transcript), answers the first one with the
persona's short acknowledgement and then stays quiet; a reminder task tells customers
of unclaimed tickets that they are still waiting, once per interval.

The engine only carries out the router's decisions. Model loading and model calls run
in a worker thread, never on the event loop. ``async with engine:`` (or ``start`` /
``stop``) runs the loop; a failed batch is retried with ``core.retry``'s backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import router
from core.bus import ENGINE_GROUP, Bus
from core.cluster import SLOT_IN_FLUX
from core.conversation import Conversations, ConversationState
from core.dead_letters import DeadLetters
from core.errors import ChatbotError
from core.finishing import finish_reply
from core.history import Turn
from core.leases import Admission, Guard, LeaseLost
from core.messages import ConversationKey, IncomingMessage, Reply, Route
from core.metrics import BATCH_SECONDS, DEFERRED, DUPLICATES_PREVENTED, observe_reply
from core.persona import Persona, PersonaStore
from core.protocols import GenerationRequest, IntentModel, IntentPrediction, ReplyModel
from core.retry import Backoff, retrying
from core.slots import fill_slots
from core.text import clean_incoming
from core.ticket import ASK_FOR_PERSON, REASON_ASKED, REASON_INTENT, REASON_LOW_CONFIDENCE, Ticket
from core.tickets import Tickets

log = logging.getLogger(__name__)

ENGINE_BACKOFF = Backoff(first=0.2, cap=5.0)  # after a failed batch (a Redis blip, say)
# A missing persona still gets a polite answer: the default fixed messages.
_NO_PERSONA = Persona(bot_id="unknown", display_name="Assistant")
_UNDECIDED = router.Decision(Route.UNAVAILABLE, "not routed yet", "unavailable")
# Redis unreachable or failing over (a Cluster slot moving), or the lease lost: wait it out (core.retry) and
# read again; never the entry's fault.
_TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
    LeaseLost,
    *SLOT_IN_FLUX,
)


class ModelProvider(Protocol):
    """Where the engine gets models by name (``core.registry.ModelRegistry``); called in
    a worker thread, so it may load from disk."""

    def intent_model(self, name: str) -> IntentModel: ...

    def reply_model(self, name: str) -> ReplyModel: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_message_chars: int = 4000
    batch_size: int = 16
    consumer: str = "engine-1"
    block_ms: int = 500
    backoff: Backoff = ENGINE_BACKOFF
    stop_timeout_s: float = 10.0  # how long ``stop`` lets the current batch finish
    reminder_poll_s: float = 5.0  # how often the reminder task looks for unclaimed tickets
    lease_ms: int = 60_000  # a dead worker's conversations are free again after this
    max_attempts: int = 3  # failed attempts before an entry goes to the dead letters
    defer_wait_s: float = 0.2  # pause before reading entries left pending again


@dataclass(slots=True)
class _Work:
    """One message on its way through a wave."""

    entry_id: str
    message: IncomingMessage
    persona: Persona | None
    text: str = ""
    truncated: bool = False
    state: ConversationState = field(default_factory=ConversationState)
    prediction: IntentPrediction | None = None
    unavailable: str = ""
    decision: router.Decision = _UNDECIDED
    generated: str = ""
    ticket: Ticket | None = None  # the conversation's latest ticket, if it ever had one
    stale_handoff: bool = False  # held by a ticket that no longer holds it: hand back

    @property
    def situation(self) -> router.Situation:
        return router.Situation(
            self.text, self.persona, self.state, self.prediction, self.unavailable, self.message
        )


class Engine:
    def __init__(
        self,
        redis: aioredis.Redis,
        models: ModelProvider,
        *,
        bus: Bus,
        personas: PersonaStore,
        conversations: Conversations,
        tickets: Tickets,
        config: EngineConfig = EngineConfig(),
    ) -> None:
        self.redis = redis
        self.models = models
        self.bus = bus
        self.personas = personas
        self.conversations = conversations
        self.tickets = tickets
        self.config = config
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reminders: asyncio.Task[None] | None = None
        self.guard = Guard(redis, bus, lease_ms=config.lease_ms)
        self.dead_letters = DeadLetters(redis, bus, personas)
        self._deferred = 0  # entries the last batch left pending
        self._look_again_at: float | None = None  # when to read those again

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start consuming the intake stream in the background."""
        if self.running:
            raise RuntimeError("engine already started")
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"engine-{self.config.consumer}")
        self._reminders = asyncio.create_task(self._remind(), name=f"reminders-{self.config.consumer}")

    async def stop(self) -> None:
        """Finish the batch in hand (up to ``stop_timeout_s``), then stop."""
        self._stop.set()
        task, self._task = self._task, None
        reminders, self._reminders = self._reminders, None
        for running in (task, reminders):
            if running is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(running, timeout=self.config.stop_timeout_s)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stop.is_set():
            async for attempt in retrying("engine batch", backoff=self.config.backoff):
                with attempt:
                    await self._next_batch()

    async def _next_batch(self) -> None:
        try:
            batch = await self.bus.read_intake(
                self.config.consumer, count=self.config.batch_size, block_ms=self.config.block_ms
            )
            if batch:
                await self._handle_or_isolate(batch)
        except Exception:
            # Keep the entries pending and read them again on the retry.
            self.bus.rewind(self.bus.keys.intake(), self.config.consumer)
            raise
        # Entries left pending are read again after a pause; new ones keep flowing meanwhile.
        now = asyncio.get_running_loop().time()
        if self._deferred and self._look_again_at is None:
            self._look_again_at = now + self.config.defer_wait_s
        if self._look_again_at is not None and now >= self._look_again_at:
            self._look_again_at = None
            self.bus.rewind(self.bus.keys.intake(), self.config.consumer)

    async def _handle_or_isolate(self, batch: Sequence[tuple[str, IncomingMessage]]) -> None:
        """Answer ``batch``; when it fails, try each entry alone, so one poison entry
        cannot hold the others, and count the failure against the entry that failed."""
        try:
            await self.handle(batch)
            return
        except _TRANSIENT:
            raise
        except Exception as exc:
            if len(batch) == 1:
                await self._failed(batch[0], exc)
                return
            log.warning("engine: a batch of %d failed (%s); trying entry by entry", len(batch), exc)
        deferred = 0
        for entry in batch:
            try:
                await self.handle([entry])
            except _TRANSIENT:
                raise
            except Exception as exc:
                await self._failed(entry, exc)
            deferred += self._deferred
        self._deferred = deferred

    async def _failed(self, entry: tuple[str, IncomingMessage], exc: Exception) -> None:
        entry_id, message = entry
        log.warning("engine: intake entry %s failed: %r", entry_id, exc)
        if not await self.dead_letters.failed(entry_id, message, repr(exc), self.config.max_attempts):
            self._deferred += 1  # pending: tried again after a pause

    async def _remind(self) -> None:
        while not self._stop.is_set():
            async for attempt in retrying("ticket reminders", backoff=self.config.backoff):
                with attempt:
                    await self.send_reminders()
                    await self.tickets.finish_followups()  # Cluster: a desk process died mid-change
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.reminder_poll_s)

    async def send_reminders(self) -> int:
        """Tell each customer whose ticket nobody has claimed for an interval that they
        are still waiting (the persona's ``still_waiting``); returns how many were told.
        Several engines may run this at once: each reminder is sent by exactly one."""
        tickets = await self.tickets.due_reminders()
        if not tickets:
            return 0
        personas = await self.personas.get_many([t.bot_id for t in tickets])
        sent = 0
        for ticket in tickets:
            persona = personas.get(ticket.bot_id) or _NO_PERSONA
            text = fill_slots(persona.messages.still_waiting, persona.facts)
            sent += await self.tickets.remind(ticket.id, text)
        return sent

    async def handle(self, batch: Sequence[tuple[str, IncomingMessage]]) -> list[Reply]:
        """Answer a batch of intake entries; returns the replies of the entries answered
        now, in input order. Entries committed before are only acknowledged; entries of a
        conversation another worker holds, or behind an older entry still pending
        elsewhere, stay pending for a later read."""
        admission = await self.guard.admit(batch)
        if admission.done:
            DUPLICATES_PREVENTED.inc(len(admission.done))
            await self.bus.ack_intake(admission.done)
        if admission.unfinished:  # committed before a crash, in a Cluster: finish the rest
            DUPLICATES_PREVENTED.inc(len(admission.unfinished))
            await self.guard.finish_later(admission)
        DEFERRED.inc(len(admission.deferred))
        self._deferred = len(admission.deferred)
        if not admission.take:
            return []
        async with self.guard.holding(admission):
            return await self._answer(admission)

    async def _answer(self, admission: Admission) -> list[Reply]:
        batch = admission.take
        personas = await self.personas.get_many([m.bot_id for _, m in batch])
        waves: list[list[tuple[str, IncomingMessage]]] = []
        depth: dict[ConversationKey, int] = defaultdict(int)
        for entry_id, message in batch:
            n = depth[message.conversation]
            depth[message.conversation] += 1
            if n == len(waves):
                waves.append([])
            waves[n].append((entry_id, message))
        replies: dict[str, Reply] = {}
        with BATCH_SECONDS.time():
            for wave in waves:
                for reply, (entry_id, message) in zip(
                    await self._handle_wave(wave, personas, admission), wave, strict=True
                ):
                    replies[entry_id] = reply
                    observe_reply(message, reply)
        return [replies[entry_id] for entry_id, _ in batch]

    # -- one wave ------------------------------------------------------------------------------
    async def _handle_wave(
        self, wave: list[tuple[str, IncomingMessage]], personas: dict[str, Persona], admission: Admission
    ) -> list[Reply]:
        works = [_Work(entry_id, message, personas.get(message.bot_id)) for entry_id, message in wave]
        for work in works:
            if work.persona is None:
                log.error(
                    "engine: no persona for bot %r; load one with `chatbot persona import`",
                    work.message.bot_id,
                )
            clean = clean_incoming(work.message.text, self.config.max_message_chars)
            work.text, work.truncated = clean.text, clean.truncated
        await self._load_state(works)

        await self._classify([w for w in works if router.needs_intent(w.situation)])
        for work in works:
            work.decision = router.decide(work.situation)
        await self._generate([w for w in works if w.decision.says == "model"])
        replies = [self._reply(w) for w in works]
        await self._commit(works, replies, admission)
        return replies

    async def _load_state(self, works: list[_Work]) -> None:
        windows = [(w.message.conversation, _persona(w).generation.history_turns) for w in works]
        for w, state in zip(works, await self.conversations.load(windows), strict=True):
            w.state = state
        latest = await self.tickets.latest_many(w.message.conversation for w in works)
        for w in works:
            w.ticket = latest.get(w.message.conversation)
            if w.state.handed_off:
                if w.ticket is not None and w.ticket.held:
                    w.state = replace(w.state, acknowledged=w.ticket.acknowledged)
                else:  # no ticket holds it (e.g. a hand-off from before tickets): the bot answers
                    w.state, w.stale_handoff = replace(w.state, handed_off=False), True

    async def _classify(self, works: list[_Work]) -> None:
        by_model: dict[str, list[_Work]] = defaultdict(list)
        for w in works:
            by_model[_persona(w).models.intent].append(w)
        for name, group in by_model.items():
            try:
                predictions = await asyncio.to_thread(self._predict, name, [w.text for w in group])
            except ChatbotError as exc:  # logged once by the registry, not on every batch
                for w in group:
                    w.unavailable = str(exc)
                continue
            for w, prediction in zip(group, predictions, strict=True):
                w.prediction = prediction

    async def _generate(self, works: list[_Work]) -> None:
        by_model: dict[str, list[_Work]] = defaultdict(list)
        for w in works:
            by_model[_persona(w).models.lm].append(w)
        for name, group in by_model.items():
            requests = [
                GenerationRequest(
                    text=w.text,
                    intent=w.prediction.label if w.prediction else "",
                    style=_persona(w).style,
                    history=w.state.history,
                    settings=_persona(w).generation,
                )
                for w in group
            ]
            error, texts = "", [""] * len(group)
            try:
                texts = await asyncio.to_thread(self._write, name, requests)
            except ChatbotError as exc:  # logged once by the registry, not on every batch
                error = str(exc)
            for w, text in zip(group, texts, strict=True):
                w.generated = text.strip()
                w.decision = router.after_generation(w.decision, w.generated, error)

    def _predict(self, name: str, texts: list[str]) -> list[IntentPrediction]:
        """In a worker thread: load the intent model (once) and classify ``texts``."""
        return self.models.intent_model(name).predict(texts)

    def _write(self, name: str, requests: list[GenerationRequest]) -> list[str]:
        """In a worker thread: load the reply model (once) and write the replies."""
        return self.models.reply_model(name).generate(requests)

    def _reply(self, w: _Work) -> Reply:
        persona = _persona(w)
        text, w.decision = finish_reply(w.decision, persona, w.generated, w.state.history, w.text)
        if w.truncated and text:
            text = f"{text}\n\n{persona.messages.too_long.format(limit=self.config.max_message_chars)}"
        prediction = router.given_prediction(w.situation) or w.prediction
        return Reply.to(
            w.message,
            text,
            w.decision.route,
            intent=prediction.label if prediction else "",
            confidence=prediction.confidence if prediction else 0.0,
            quick_replies=router.quick_replies(w.decision, persona) if text else (),
        )

    async def _commit(self, works: list[_Work], replies: list[Reply], admission: Admission) -> None:
        entries = [(w.entry_id, w.message) for w in works]
        async with self.guard.commit(admission, entries) as pipe_for:
            for w, reply in zip(works, replies, strict=True):
                pipe, conv, decision = pipe_for(w.entry_id), w.message.conversation, w.decision
                user_turn = Turn(
                    role="user",
                    text=w.text,
                    timestamp=w.message.timestamp,
                    intent=reply.intent,
                    confidence=reply.confidence,
                    message_id=w.message.message_id,
                    display_name=w.message.display_name,
                    attachments=w.message.attachments,
                )
                bot_turn = Turn(role="bot", text=reply.text, route=reply.route.value, intent=reply.intent)
                # A quiet turn on a held conversation stores only the customer's words.
                self.conversations.queue_turns(
                    pipe, conv, [user_turn, bot_turn] if reply.text else [user_turn]
                )
                self.conversations.queue_unsure_streak(pipe, conv, decision.streak)
                if w.stale_handoff:
                    self.conversations.queue_hand_back(pipe, conv)
                if decision.route is Route.HUMAN and w.ticket is not None:
                    self.tickets.queue_customer_message(
                        pipe, w.ticket, acknowledged=decision.says == "handoff_waiting", meta=w.message.meta
                    )
                elif decision.route is Route.ESCALATE:
                    reason, detail = _ticket_reason(decision)
                    self.tickets.queue_open(
                        pipe,
                        conv,
                        previous=w.ticket,
                        reason=reason,
                        detail=detail,
                        intent=reply.intent,
                        confidence=reply.confidence,
                        display_name=w.message.display_name,
                        meta=w.message.meta,
                    )
                # A quiet turn still queues its (empty) reply: it is the receipt that
                # lets a waiting caller (web chat, console) and a typing indicator stop;
                # platform adapters send nothing for it.
                self.bus.queue_reply(pipe, reply)


def _ticket_reason(decision: router.Decision) -> tuple[str, str]:
    """Which rule handed the conversation over, for the ticket."""
    if decision.low_confidence:
        return REASON_LOW_CONFIDENCE, decision.reason
    if decision.intent == ASK_FOR_PERSON:
        return REASON_ASKED, "the customer asked for a person"
    return REASON_INTENT, decision.reason


def _persona(w: _Work) -> Persona:
    return w.persona or _NO_PERSONA


__all__ = ["ENGINE_GROUP", "Engine", "EngineConfig", "ModelProvider"]
