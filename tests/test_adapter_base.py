"""The adapter base: what happens to an event while Redis is down."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from adapters.base import Event, Intake
from adapters.webchat import WebChatAdapter
from core.bus import Bus
from core.keys import Keys
from core.messages import IncomingMessage
from core.retry import Backoff
from tests.helpers import wait_for


def unreachable() -> aioredis.Redis:
    """A client for a port nothing listens on, that fails at once (no client-side retries)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])  # free again once the probe is closed
    return aioredis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


async def test_stopping_the_adapter_ends_the_hold_on_an_event(
    keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.retry")
    nowhere = unreachable()
    slow = Backoff(first=600.0, cap=600.0, jitter=0.0)  # a wait the stop must cut short
    adapter = WebChatAdapter(Bus(nowhere, keys), bot_id="support", backoff=slow)
    message = IncomingMessage("support", "web", "u1", "u1", "hello")
    held = asyncio.create_task(adapter.accept(Event(message, "ev-1", direct=True)))
    await wait_for(lambda: "web intake failed" in caplog.text, what="the event held")
    assert not held.done()
    await adapter.stop()
    with pytest.raises(RedisError):  # raised, so a webhook caller answers 5xx and the platform resends
        await asyncio.wait_for(held, timeout=5)
    assert adapter.stats["received"] == 1 and adapter.stats[Intake.SUBMITTED] == 0
    await nowhere.aclose()


async def test_without_hold_a_redis_error_is_raised_at_once(keys: Keys) -> None:
    nowhere = unreachable()
    adapter = WebChatAdapter(Bus(nowhere, keys), bot_id="support")
    message = IncomingMessage("support", "web", "u1", "u1", "hello")
    with pytest.raises(RedisError):
        await adapter.accept(Event(message, "ev-1", direct=True), hold=False)
    await nowhere.aclose()


async def test_bots_and_unaddressed_group_talk_are_ignored_without_touching_redis(keys: Keys) -> None:
    nowhere = unreachable()
    adapter = WebChatAdapter(Bus(nowhere, keys), bot_id="support")
    message = IncomingMessage("support", "web", "g1", "u1", "hello")
    assert await adapter.accept(Event(message, "ev-1", from_bot=True, direct=True)) is Intake.IGNORED
    assert await adapter.accept(Event(message, "ev-2")) is Intake.IGNORED  # no persona store: mentions only
    assert adapter.stats[Intake.IGNORED] == 2
    await nowhere.aclose()
