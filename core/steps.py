"""What the engine does to each message, however it groups them (``core.waves``,
``core.chains``):

1. :meth:`Steps.prepare`: clean the text, read the conversation state (one pipeline
   for the group), classify the messages whose route depends on it (one classifier
   call) and let ``core.router`` decide;
2. :meth:`Steps.start_generation`: hand the ``generate`` replies to the reply model. A
   streaming model (``core.batching.ContinuousGenerator``) takes each request into its
   running batch at once; any other model gets one ``generate`` call for the group, in a
   worker thread;
3. :meth:`Steps.finish`: wait for one message's reply, publishing its text so far while
   it is written (``core.streaming``), and build the :class:`Reply`;
4. :meth:`Steps.commit`: one transaction for a group of finished messages (turns, state,
   tickets, replies, idempotency records, XACK; ``core.leases`` checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from core import best_of, router
from core.bus import Bus
from core.conversation import Conversations
from core.errors import ChatbotError
from core.finishing import finish_reply
from core.history import Turn
from core.leases import Admission, Guard
from core.messages import Reply, Route
from core.partials import Partials
from core.persona import Persona
from core.protocols import (
    GenerationRequest,
    IntentPrediction,
    ReplyModel,
    StreamingReplyModel,
)
from core.slots import fill_slots
from core.streaming import Follower, Pacer, StreamPolicy, wants_partials
from core.text import clean_incoming
from core.ticket import ASK_FOR_PERSON, REASON_ASKED, REASON_INTENT, REASON_LOW_CONFIDENCE
from core.tickets import Tickets
from core.work import Entry, Work

if TYPE_CHECKING:
    from core.engine import EngineConfig, ModelProvider

log = logging.getLogger("core.engine")
T = TypeVar("T")


class Steps:
    def __init__(
        self,
        models: ModelProvider,
        *,
        bus: Bus,
        conversations: Conversations,
        tickets: Tickets,
        guard: Guard,
        partials: Partials,
        config: EngineConfig,
    ) -> None:
        self.models = models
        self.bus = bus
        self.conversations = conversations
        self.tickets = tickets
        self.guard = guard
        self.partials = partials
        self.config = config
        self.pacer = Pacer(
            StreamPolicy(config.partial_every_tokens, config.partial_every_s, config.partials_per_s)
        )

    # -- 1. prepare ------------------------------------------------------------------------
    async def prepare(self, entries: Sequence[Entry], personas: dict[str, Persona]) -> list[Work]:
        """Clean, load state, classify and route a group of messages (at most one per
        conversation: each must see the previous one's turns)."""
        works = [Work(entry_id, message, personas.get(message.bot_id)) for entry_id, message in entries]
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
        return works

    async def _load_state(self, works: list[Work]) -> None:
        windows = [(w.message.conversation, w.persona_or_default.generation.history_turns) for w in works]
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

    async def _classify(self, works: list[Work]) -> None:
        by_model: dict[str, list[Work]] = defaultdict(list)
        for w in works:
            by_model[w.persona_or_default.models.intent].append(w)
        for name, group in by_model.items():
            try:
                predictions = await asyncio.to_thread(self._predict, name, [w.text for w in group])
            except ChatbotError as exc:  # logged once by the registry, not on every batch
                for w in group:
                    w.unavailable = str(exc)
                continue
            for w, prediction in zip(group, predictions, strict=True):
                w.prediction = prediction

    def _predict(self, name: str, texts: list[str]) -> list[IntentPrediction]:
        """In a worker thread: load the intent model (once) and classify ``texts``."""
        return self.models.intent_model(name).predict(texts)

    # -- 2. generate -----------------------------------------------------------------------
    async def start_generation(self, works: Sequence[Work]) -> None:
        """Hand the ``generate`` replies of ``works`` to their reply models (no waiting)."""
        by_model: dict[str, list[Work]] = defaultdict(list)
        for w in works:
            if w.decision.says == "model":
                by_model[w.persona_or_default.models.lm].append(w)
        for name, group in by_model.items():
            try:  # loads the model once (from disk: off the event loop)
                model: ReplyModel = await asyncio.to_thread(self.models.reply_model, name)
            except ChatbotError as exc:  # logged once by the registry, not on every batch
                for w in group:
                    w.error = str(exc)
                continue
            streaming = isinstance(model, StreamingReplyModel)
            batch: list[tuple[Work, GenerationRequest]] = []
            for w in group:
                request = _request(w)
                if not streaming:
                    batch.append((w, request))
                    continue
                try:  # best-of-n candidates stream side by side (core.best_of)
                    w.stream = best_of.submit(cast(StreamingReplyModel, model), request)
                except ChatbotError as exc:  # e.g. a prompt that can never fit the KV budget
                    w.error = str(exc)
            if batch:
                requests = [r for _, r in batch]
                written = asyncio.ensure_future(asyncio.to_thread(model.generate, requests))
                for row, (w, _) in enumerate(batch):
                    w.written, w.row = written, row

    # -- 3. finish -------------------------------------------------------------------------
    async def finish(self, w: Work) -> Reply:
        """Wait for ``w``'s reply (publishing it as it is written) and build the Reply."""
        if w.decision.says != "model":
            return self.reply(w)
        follower = None
        if w.stream is not None and wants_partials(w.message, w.persona):
            follower = Follower(
                w.message,
                w.stream,
                lambda text: fill_slots(text.strip(), w.persona_or_default.facts),
                self.partials.publish,
                self.pacer,
            )
        generated, error = "", w.error
        try:
            generated = await self._generated(w, follower)
        except ChatbotError as exc:
            error = str(exc)
        w.decision = router.after_generation(w.decision, generated.strip(), error)
        reply = self.reply(w, generated.strip())
        if follower is not None:
            await follower.settle(reply.text)
        return reply

    async def _generated(self, w: Work, follower: Follower | None) -> str:
        if w.error:
            return ""
        if w.written is not None:
            return (await w.written)[w.row]
        assert w.stream is not None
        stream = w.stream
        following = asyncio.create_task(follower.run()) if follower is not None else None
        try:
            return await stream.text()
        finally:
            if following is not None:
                if not stream.done:  # cancelled before the reply ended
                    following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following

    def reply(self, w: Work, generated: str = "") -> Reply:
        persona = w.persona_or_default
        text, w.decision = finish_reply(w.decision, persona, generated, w.state.history, w.text)
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

    # -- 4. commit -------------------------------------------------------------------------
    async def commit(self, works: Sequence[Work], replies: Sequence[Reply], admission: Admission) -> None:
        # the guard adds the idempotency records, lease releases and XACKs (per slot in a Cluster)
        async with self.guard.commit(admission, [w.entry for w in works]) as pipe_for:
            for w, reply in zip(works, replies, strict=True):
                self._queue(pipe_for(w.entry_id), w, reply)

    def _queue(self, pipe: Any, w: Work, reply: Reply) -> None:
        conv, decision = w.message.conversation, w.decision
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
        self.conversations.queue_turns(pipe, conv, [user_turn, bot_turn] if reply.text else [user_turn])
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
        # A quiet turn still queues its (empty) reply: it is the receipt that lets a
        # waiting caller (web chat, console) and a typing indicator stop; platform
        # adapters send nothing for it.
        self.bus.queue_reply(pipe, reply)


def _request(w: Work) -> GenerationRequest:
    persona = w.persona_or_default
    return GenerationRequest(
        text=w.text,
        intent=w.prediction.label if w.prediction else "",
        style=persona.style,
        history=w.state.history,
        settings=persona.generation,
        conversation=w.message.conversation,  # lets a continuous generator reuse its cached prefix
    )


def _ticket_reason(decision: router.Decision) -> tuple[str, str]:
    """Which rule handed the conversation over, for the ticket."""
    if decision.low_confidence:
        return REASON_LOW_CONFIDENCE, decision.reason
    if decision.intent == ASK_FOR_PERSON:
        return REASON_ASKED, "the customer asked for a person"
    return REASON_INTENT, decision.reason


async def together(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """All results in order; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = ["Steps", "together"]
