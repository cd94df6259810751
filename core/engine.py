"""The conversation engine: intake stream in, replies out, history kept.

For each batch read from the intake stream (consumer group ``engine``):

1. messages are grouped into *waves*: the n-th message of every conversation in the
   batch goes into wave n, so two quick messages from one user are answered in order,
   the second seeing the first in its history, while different users share a batch;
2. per wave, one pipeline reads each conversation's state (recent turns, hand-off flag,
   unsure-turn streak); the classifier runs once over the wave, the router picks a
   route per message, and the LM writes all ``generate`` replies as one batch;
3. one transaction per wave appends the user and bot turns, updates the state, opens
   escalations, queues the replies on each platform's outbound stream and acknowledges
   the intake entries; a crash before it leaves the entries pending, so nothing is lost.

Model calls run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis

from core.bus import ENGINE_GROUP, Bus
from core.errors import ChatbotError
from core.escalation import Escalations
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey, IncomingMessage, Reply, Route
from core.metrics import BATCH_SECONDS, MESSAGES
from core.persona import Persona, PersonaStore
from core.protocols import GenerationRequest, IntentModel, IntentPrediction, ReplyModel
from core.router import decide
from core.slots import fill_slots
from core.text import clean_incoming

log = logging.getLogger(__name__)


class ModelProvider(Protocol):
    def intent_model(self, name: str) -> IntentModel: ...

    def reply_model(self, name: str) -> ReplyModel: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_message_chars: int = 4000
    batch_size: int = 16
    consumer: str = "engine-1"
    block_ms: int = 500


@dataclass(slots=True)
class _Work:
    """One message on its way through a wave."""

    entry_id: str
    message: IncomingMessage
    persona: Persona
    text: str = ""
    truncated: bool = False
    history: list[Turn] = field(default_factory=list)
    handed_off: bool = False
    streak: int = 0
    prediction: IntentPrediction | None = None
    route: Route = Route.GENERATE
    reason: str = ""
    reply_text: str = ""


class Engine:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        models: ModelProvider,
        *,
        history: History,
        config: EngineConfig = EngineConfig(),
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.models = models
        self.history = history
        self.config = config
        self.bus = Bus(redis, keys)
        self.personas = PersonaStore(redis, keys)
        self.escalations = Escalations(redis, keys, history.ttl_seconds)
        self.processed = 0

    # -- the loop ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume the intake stream until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            try:
                batch = await self.bus.read_intake(
                    self.config.consumer, count=self.config.batch_size, block_ms=self.config.block_ms
                )
                if batch:
                    await self.handle(batch)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis blips: keep the entries pending and retry
                failures += 1
                self.bus.rewind(self.keys.intake(), self.config.consumer)
                log.error("engine: batch failed (%s: %s); retrying", exc.__class__.__name__, exc)
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))

    async def handle(self, batch: Sequence[tuple[str, IncomingMessage]]) -> list[Reply]:
        """Answer a batch of intake entries; returns the replies in input order."""
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
                for reply, (entry_id, _m) in zip(await self._handle_wave(wave, personas), wave, strict=False):
                    replies[entry_id] = reply
                    MESSAGES.labels(reply.platform, reply.route.value).inc()
        self.processed += len(batch)
        return [replies[entry_id] for entry_id, _ in batch]

    # -- one wave ------------------------------------------------------------------------
    async def _handle_wave(
        self, wave: list[tuple[str, IncomingMessage]], personas: dict[str, Persona]
    ) -> list[Reply]:
        works = [
            _Work(entry_id, message, personas.get(message.bot_id) or _missing_persona(message.bot_id))
            for entry_id, message in wave
        ]
        for work in works:
            if work.message.bot_id not in personas:
                work.route, work.reason = Route.UNAVAILABLE, f"no persona for bot {work.message.bot_id!r}"
            clean = clean_incoming(work.message.text, self.config.max_message_chars)
            work.text, work.truncated = clean.text, clean.truncated
        await self._load_state(works)

        active = [w for w in works if w.text and not w.handed_off and w.route is not Route.UNAVAILABLE]
        await self._classify(active)
        for work in works:
            self._route(work)
        await self._generate([w for w in works if w.route is Route.GENERATE])
        replies = [self._reply(w) for w in works]
        await self._commit(works, replies)
        return replies

    async def _load_state(self, works: list[_Work]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in works:
                conv = w.message.conversation
                pipe.lrange(self.keys.history(conv), -max(1, w.persona.generation.history_turns), -1)
                pipe.exists(self.keys.handoff(conv))
                pipe.get(self.keys.low_confidence(conv))
            results = await pipe.execute()
        for i, w in enumerate(works):
            raw_history, handoff, streak = results[3 * i : 3 * i + 3]
            w.history = (
                [Turn.from_json(r) for r in raw_history][-w.persona.generation.history_turns :]
                if w.persona.generation.history_turns
                else []
            )
            w.handed_off = bool(handoff)
            w.streak = int(streak or 0)

    async def _classify(self, works: list[_Work]) -> None:
        by_model: dict[str, list[_Work]] = defaultdict(list)
        for w in works:
            by_model[w.persona.models.intent].append(w)
        for name, group in by_model.items():
            try:
                model = self.models.intent_model(name)
                predictions = await asyncio.to_thread(model.predict, [w.text for w in group])
            except ChatbotError as exc:
                log.error("engine: %s", exc)
                for w in group:
                    w.route, w.reason = Route.UNAVAILABLE, str(exc)
                continue
            for w, prediction in zip(group, predictions, strict=False):
                w.prediction = prediction

    def _route(self, w: _Work) -> None:
        if w.route is Route.UNAVAILABLE:
            return
        if not w.text:
            w.route, w.reason = Route.PROMPT, "empty message"
        elif w.handed_off:
            w.route, w.reason = Route.HUMAN, "conversation is with the support team"
        elif w.prediction is not None:
            decision = decide(w.prediction, w.persona.routing, w.streak)
            w.route, w.reason = decision.route, decision.reason
            w.streak = w.streak + 1 if decision.low_confidence else 0

    async def _generate(self, works: list[_Work]) -> None:
        by_model: dict[str, list[_Work]] = defaultdict(list)
        for w in works:
            by_model[w.persona.models.lm].append(w)
        for name, group in by_model.items():
            requests = [
                GenerationRequest(
                    text=w.text,
                    intent=w.prediction.label if w.prediction else "",
                    style=w.persona.style,
                    history=tuple(w.history),
                    settings=w.persona.generation,
                )
                for w in group
            ]
            try:
                model = self.models.reply_model(name)
                texts = await asyncio.to_thread(model.generate, requests)
            except ChatbotError as exc:
                log.error("engine: %s", exc)
                for w in group:
                    w.route, w.reason = Route.UNAVAILABLE, str(exc)
                continue
            for w, text in zip(group, texts, strict=False):
                w.reply_text = text.strip()

    def _reply(self, w: _Work) -> Reply:
        persona, says = w.persona, w.persona.messages
        text = {
            Route.PROMPT: says.empty,
            Route.HUMAN: says.handoff_waiting,
            Route.ESCALATE: says.handoff,
            Route.REPHRASE: says.rephrase,
            Route.UNAVAILABLE: says.unavailable,
            Route.CANNED: persona.routing.canned.get(w.prediction.label if w.prediction else "", ""),
            Route.GENERATE: w.reply_text,
        }[w.route]
        if w.route is Route.GENERATE and not text:
            text = says.rephrase  # the model produced nothing usable
        text = fill_slots(text, persona.facts)
        if w.truncated:
            text = f"{text}\n\n{says.too_long.format(limit=self.config.max_message_chars)}"
        prediction = w.prediction
        return Reply.to(
            w.message,
            text,
            w.route,
            intent=prediction.label if prediction else "",
            confidence=prediction.confidence if prediction else 0.0,
        )

    async def _commit(self, works: list[_Work], replies: list[Reply]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for w, reply in zip(works, replies, strict=False):
                conv = w.message.conversation
                user_turn = Turn(
                    role="user",
                    text=w.text,
                    timestamp=w.message.timestamp,
                    intent=reply.intent,
                    confidence=reply.confidence,
                    message_id=w.message.message_id,
                    display_name=w.message.display_name,
                )
                bot_turn = Turn(role="bot", text=reply.text, route=reply.route.value, intent=reply.intent)
                self.history.queue_append(pipe, conv, [user_turn, bot_turn])
                lowconf = self.keys.low_confidence(conv)
                if w.route is Route.ESCALATE:
                    transcript = [*w.history, user_turn, bot_turn]
                    self.escalations.queue_open(pipe, conv, w.reason, transcript, w.message.display_name)
                    pipe.delete(lowconf)
                elif w.streak:
                    pipe.set(lowconf, w.streak, ex=self.history.ttl_seconds)
                    pipe.sadd(self.keys.user_index(conv.platform, conv.user_id), lowconf)
                else:
                    pipe.delete(lowconf)
                self.bus.queue_reply(pipe, reply)
            self.bus.queue_ack_intake(pipe, [w.entry_id for w in works])
            await pipe.execute()


def _missing_persona(bot_id: str) -> Persona:
    """Answer politely when a message names a bot nobody configured (and say so in logs)."""
    log.error("engine: no persona for bot %r; load one with `chatbot persona import`", bot_id)
    return Persona(bot_id="unknown", display_name="Assistant")


__all__ = ["ENGINE_GROUP", "Engine", "EngineConfig", "ModelProvider"]
