"""The composition root: one place that builds the framework's parts from settings."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

import redis.asyncio as aioredis

from bots.config import Settings
from bots.personas import default_personas
from core.admission import Admission, parse_rate
from core.bus import Bus
from core.connection import connect
from core.conversation import Conversations
from core.engine import Engine, EngineConfig
from core.history import History
from core.keys import Keys
from core.persona import PersonaStore
from core.proactive import Proactive
from core.registry import ModelRegistry
from core.tickets import Tickets

log = logging.getLogger(__name__)


class Runtime:
    """Redis connection plus the stores built on it; ``async with Runtime(settings)``."""

    redis: aioredis.Redis

    def __init__(self, settings: Settings, *, seed_personas: bool = True) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.registry = ModelRegistry(
            settings.models_dir, settings.device, generation=settings.generation, int8=settings.lm_int8
        )
        self.seed_personas = seed_personas

    async def __aenter__(self) -> Runtime:
        self.redis = await connect(
            self.settings.redis_url, self.settings.data_dir, self.settings.redis_options
        )
        admission = Admission(
            self.redis,
            self.keys,
            per_user=parse_rate(self.settings.intake_rate_limit, "CHATBOT_INTAKE_RATE_LIMIT"),
            max_backlog=self.settings.busy_backlog,
        )
        self.bus = Bus(self.redis, self.keys, admission=admission)
        self.history = History(
            self.redis,
            self.keys,
            max_turns=self.settings.history_max_turns,
            ttl_seconds=self.settings.history_ttl_seconds,
        )
        self.conversations = Conversations(self.redis, self.keys, self.history)
        self.personas = PersonaStore(self.redis, self.keys)
        self.proactive = Proactive(self.redis, self.keys, self.bus, self.history, self.personas)
        self.tickets = Tickets(
            self.redis,
            self.keys,
            bus=self.bus,
            conversations=self.conversations,
            config=self.settings.ticket_config,
        )
        if self.seed_personas:
            await self.seed_missing_personas()
        return self

    async def seed_missing_personas(self) -> None:
        """Store each bot definition whose persona is missing (first start, or a Redis
        that came back empty); an admin's edits are never overwritten."""
        for persona in default_personas(self.settings.bots_dir):
            if await self.personas.put_if_absent(persona):
                log.info("seeded persona %s", persona.bot_id)

    async def hand_back(self, stream: str, group: str, consumer: str) -> None:
        """Make what ``consumer`` did not finish claimable by the other processes at once."""
        try:
            count = await self.bus.hand_back(stream, group, consumer, self.settings.upkeep.claim_idle_ms)
        except Exception as exc:  # Redis gone: the entries are claimed after the idle time instead
            log.warning("could not hand back %s entries of %s: %s", stream, consumer, exc)
            return
        if count:
            log.warning("handed back %d unfinished entries of %s", count, stream)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.registry.close)
        await self.redis.aclose()

    def engine(self, consumer: str = "engine-1", stop_timeout_s: float = 10.0) -> Engine:
        """An engine on this runtime's stores (start it with ``async with``); ``stop``
        lets the batch in hand finish for up to ``stop_timeout_s``."""
        return Engine(
            self.redis,
            self.registry,
            bus=self.bus,
            personas=self.personas,
            conversations=self.conversations,
            tickets=self.tickets,
            config=EngineConfig(
                max_message_chars=self.settings.max_message_chars,
                batch_size=self.settings.engine_batch_size,
                generation=self.settings.generation,
                max_in_flight=self.settings.engine_in_flight,
                partials_per_s=self.settings.partials_per_s,
                consumer=consumer,
                stop_timeout_s=stop_timeout_s,
                lease_ms=int(self.settings.claim_idle * 1000),  # free when its entries are claimable
                max_attempts=self.settings.max_attempts,
            ),
        )
