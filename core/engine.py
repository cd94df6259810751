"""The conversation engine: intake stream in, replies out, history kept.

The engine reads batches from the intake stream (consumer group ``engine``) and answers
each message through the same steps (``core.steps``): clean the text, read the
conversation's state (recent turns, hand-off flag, unsure-turn streak:
``core.conversation``), classify it if its route depends on that, let ``core.router``
decide, have the LM write the ``generate`` replies (the router's second step turns an
empty or failed generation into a visible ``rephrase`` or ``unavailable``), and commit:
one transaction appends the user and bot turns, updates the state, opens or reopens
tickets, queues the reply on its platform's outbound stream, writes the message's
idempotency record and acknowledges the intake entry; a crash before it leaves the
entry pending, so nothing is lost. (In a Redis Cluster each entry commits slot by slot
instead, as exactly-once: ``core.commits``.)

How batches overlap (``EngineConfig.generation``):

- ``continuous`` (default): each batch is answered in a task of its own
  (``core.chains``) while the engine reads the next, up to ``max_in_flight`` messages
  in hand. Every ``generate`` reply joins the reply model's running batch at the next
  decoding step (``core.batching.ContinuousGenerator``) and is committed as soon as it is
  written; its text so far is published while it is written (``core.streaming``).
- ``waves``: one batch at a time, in waves (``core.waves``): one generation call and one
  commit per wave, and the next batch waits for the whole wave.

Either way a conversation's messages are answered in order, each seeing the previous
turn. Processing is at-least-once, effects exactly-once (``core.leases``): before the
models run, entries already committed are only acknowledged, and each conversation of a
batch is leased to that batch, so nobody else answers it meanwhile (another batch of this
engine, or another worker, leaves its later entries pending until the lease and the older
entries are gone). A batch that fails is tried again entry by entry; an entry that fails
``max_attempts`` times goes to the dead letters (``core.dead_letters``) and its customer
gets the persona's "unavailable" text.

While the support team holds a conversation (``core.tickets``) the bot only stores the
customer's messages (the ticket's live transcript), answers the first one with the
persona's short acknowledgement and then stays quiet; a reminder task tells customers
of unclaimed tickets that they are still waiting, once per interval.

The engine only carries out the router's decisions. Model loading and blocking model
calls run in worker threads, never on the event loop (on CPU the registry runs the
models themselves on one thread, ``core.lane``). ``async with engine:`` (or
``start`` / ``stop``) runs the loop; a failed batch is retried with ``core.retry``'s
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.bus import ENGINE_GROUP, Bus
from core.chains import answer_in_chains
from core.cluster import SLOT_IN_FLUX
from core.conversation import Conversations
from core.dead_letters import DeadLetters
from core.in_hand import InHand
from core.leases import Admission, Guard, LeaseLost
from core.messages import Reply
from core.metrics import BATCH_SECONDS, DEFERRED, DUPLICATES_PREVENTED
from core.partials import Partials
from core.persona import PersonaStore
from core.protocols import IntentModel, ReplyModel
from core.retry import Backoff, retrying
from core.slots import fill_slots
from core.steps import Steps
from core.tickets import Tickets
from core.waves import answer_in_waves
from core.work import NO_PERSONA, Entry

log = logging.getLogger(__name__)

ENGINE_BACKOFF = Backoff(first=0.2, cap=5.0)  # after a failed batch (a Redis blip, say)
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
Generation = Literal["continuous", "waves"]
GENERATION_MODES: tuple[Generation, ...] = ("continuous", "waves")


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
    stop_timeout_s: float = 10.0  # how long ``stop`` lets the batches in hand finish
    reminder_poll_s: float = 5.0  # how often the reminder task looks for unclaimed tickets
    lease_ms: int = 60_000  # a dead worker's conversations are free again after this
    max_attempts: int = 3  # failed attempts before an entry goes to the dead letters
    defer_wait_s: float = 0.2  # pause before reading entries left pending again
    generation: Generation = "continuous"  # how batches overlap (module docstring)
    max_in_flight: int = 64  # continuous: messages in hand at once; reading pauses above
    partial_every_tokens: int = 8  # a streamed reply's text goes out at most this often
    partial_every_s: float = 0.1  # ... and at most once per this many seconds
    partials_per_s: float = 150.0  # ... and at most this many a second in all (0: no cap; core.streaming)


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
        if config.generation not in GENERATION_MODES:
            raise ValueError(f"generation must be one of {GENERATION_MODES}, not {config.generation!r}")
        self.redis = redis
        self.models = models
        self.bus = bus
        self.personas = personas
        self.conversations = conversations
        self.tickets = tickets
        self.config = config
        self.guard = Guard(redis, bus, lease_ms=config.lease_ms)
        self.dead_letters = DeadLetters(redis, bus, personas)
        self.partials = Partials(redis, bus.keys)
        self.steps = Steps(
            models,
            bus=bus,
            conversations=conversations,
            tickets=tickets,
            guard=self.guard,
            partials=self.partials,
            config=config,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reminders: asyncio.Task[None] | None = None
        self._forgets: asyncio.Task[None] | None = None
        self._look_again_at: float | None = None  # when to read entries left pending again
        self._in_hand = InHand(config.max_in_flight)  # continuous: batches answered at once

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start consuming the intake stream in the background."""
        if self.running:
            raise RuntimeError("engine already started")
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"engine-{self.config.consumer}")
        self._reminders = asyncio.create_task(self._remind(), name=f"reminders-{self.config.consumer}")
        # `history forget` in any process: drop this process's cached prompts of the user
        self._forgets = asyncio.create_task(self.bus.follow_forgets(self._forget_cached), name="forgets")

    def _forget_cached(self, platform: str, user_id: str) -> None:
        forget = getattr(self.models, "forget", None)  # a ModelRegistry; scripted providers have none
        if callable(forget):
            dropped = forget(platform, user_id)
            log.info("engine: dropped %s cached prompt(s) of a forgotten user", dropped)

    async def stop(self) -> None:
        """Finish the batches in hand (up to ``stop_timeout_s``), then stop; what is not
        finished by then stays pending for the next reader."""
        self._stop.set()
        self._in_hand.wake()
        task, self._task = self._task, None
        reminders, self._reminders = self._reminders, None
        forgets, self._forgets = self._forgets, None
        if forgets is not None:
            forgets.cancel()
        for running in (task, reminders, forgets):
            if running is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(running, timeout=self.config.stop_timeout_s)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def in_hand(self) -> int:
        """Intake entries being answered now."""
        return len(self._in_hand)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the loop ----------------------------------------------------------------------------
    @property
    def _concurrent(self) -> bool:
        return self.config.generation == "continuous"

    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                async for attempt in retrying("engine batch", backoff=self.config.backoff):
                    with attempt:
                        await self._next_batch()
        finally:  # stopping: let the batches in hand finish (``stop`` bounds the wait)
            await self._in_hand.finish()

    async def _next_batch(self) -> None:
        count = self.config.batch_size
        if self._concurrent:
            count = min(count, await self._in_hand.room(self._stop))
            failure = self._in_hand.failure()
            if failure is not None:  # a batch in hand hit Redis trouble: back off here
                raise failure
            if self._stop.is_set():
                return
        try:
            batch = await self.bus.read_intake(
                self.config.consumer, count=count, block_ms=self.config.block_ms
            )
            batch = [entry for entry in batch if entry[0] not in self._in_hand]  # re-read while pending
            if batch and self._concurrent:
                self._in_hand.start(batch, self._handle_or_isolate(batch), self._note_deferred, self._rewind)
            elif batch:
                self._note_deferred(await self._handle_or_isolate(batch))
        except Exception:
            # Keep the entries pending and read them again on the retry.
            self._rewind()
            raise
        # Entries left pending are read again after a pause; new ones keep flowing meanwhile.
        if self._look_again_at is not None and asyncio.get_running_loop().time() >= self._look_again_at:
            self._look_again_at = None
            self._rewind()

    def _note_deferred(self, deferred: int) -> None:
        if deferred and self._look_again_at is None:
            self._look_again_at = asyncio.get_running_loop().time() + self.config.defer_wait_s

    def _rewind(self) -> None:
        self.bus.rewind(self.bus.keys.intake(), self.config.consumer)

    async def _handle_or_isolate(self, batch: Sequence[Entry]) -> int:
        """Answer ``batch``; when it fails, try each entry alone, so one poison entry
        cannot hold the others, and count the failure against the entry that failed.
        Returns how many entries were left pending for a later read."""
        try:
            return (await self._handle(batch))[1]
        except _TRANSIENT:
            raise
        except Exception as exc:
            if len(batch) == 1:
                return await self._failed(batch[0], exc)
            log.warning("engine: a batch of %d failed (%s); trying entry by entry", len(batch), exc)
        deferred = 0
        for entry in batch:
            try:
                deferred += (await self._handle([entry]))[1]
            except _TRANSIENT:
                raise
            except Exception as exc:
                deferred += await self._failed(entry, exc)
        return deferred

    async def _failed(self, entry: Entry, exc: Exception) -> int:
        """Count a failure against ``entry``; 1 if it stays pending (tried again after a
        pause), 0 if it went to the dead letters."""
        entry_id, message = entry
        log.warning("engine: intake entry %s failed: %r", entry_id, exc)
        lettered = await self.dead_letters.failed(entry_id, message, repr(exc), self.config.max_attempts)
        return 0 if lettered else 1

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
            persona = personas.get(ticket.bot_id) or NO_PERSONA
            text = fill_slots(persona.messages.still_waiting, persona.facts)
            sent += await self.tickets.remind(ticket.id, text)
        return sent

    # -- one batch -----------------------------------------------------------------------------
    async def handle(self, batch: Sequence[Entry]) -> list[Reply]:
        """Answer a batch of intake entries; returns the replies of the entries answered
        now, in input order. Entries committed before are only acknowledged; entries of a
        conversation another batch or worker holds, or behind an older entry still
        pending elsewhere, stay pending for a later read."""
        return (await self._handle(batch))[0]

    async def _handle(self, batch: Sequence[Entry]) -> tuple[list[Reply], int]:
        """The replies, and how many entries were left pending."""
        admission = await self.guard.admit(batch)
        if admission.done:
            DUPLICATES_PREVENTED.inc(len(admission.done))
            await self.bus.ack_intake(admission.done)
        if admission.unfinished:  # committed before a crash, in a Cluster: finish the rest
            DUPLICATES_PREVENTED.inc(len(admission.unfinished))
            await self.guard.finish_later(admission)
        DEFERRED.inc(len(admission.deferred))
        if not admission.take:
            return [], len(admission.deferred)
        async with self.guard.holding(admission):
            return await self._answer(admission), len(admission.deferred)

    async def _answer(self, admission: Admission) -> list[Reply]:
        batch = admission.take
        personas = await self.personas.get_many([m.bot_id for _, m in batch])
        answer = answer_in_chains if self._concurrent else answer_in_waves
        with BATCH_SECONDS.time():
            replies = await answer(self.steps, batch, personas, admission)
        return [replies[entry_id] for entry_id, _ in batch]


__all__ = ["ENGINE_GROUP", "GENERATION_MODES", "Engine", "EngineConfig", "Generation", "ModelProvider"]
