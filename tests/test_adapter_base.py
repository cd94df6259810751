"""The adapter base: what happens to an event while Redis is down, a receive loop run in
the background, closing quietly, and keeping secrets out of SDK logs."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from adapters.base import Event, Intake, PlatformAdapter
from adapters.webchat import WebChatAdapter
from core.bus import Bus
from core.errors import DeliveryError
from core.keys import Keys
from core.messages import IncomingMessage, Reply
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


# -- a receive loop in the background, quiet shutdown, redaction ------------------------------
@dataclass(frozen=True, slots=True)
class LoopConfig:
    token: str = field(default="tok-123456", repr=False)


class LoopAdapter(PlatformAdapter[LoopConfig]):
    """A platform whose SDK needs its receive loop run in the background (like a gateway)."""

    platform: ClassVar[str] = "loop"
    sdk_loggers: ClassVar[tuple[str, ...]] = ("loopsdk",)

    def __init__(self, bus: Bus, *, crash_before_ready: bool = False, ready_timeout: float = 10.0) -> None:
        super().__init__(bus, LoopConfig(), bot_id="support")
        self.crash_before_ready = crash_before_ready
        self.ready_timeout = ready_timeout
        self.handshake = asyncio.Event()  # the platform's "ready" arrives once this is set
        self.handshake.set()
        self.became_ready: bool | None = None
        self.crash = asyncio.Event()  # the SDK's loop dies
        self.closed = asyncio.Event()  # the SDK's client was closed: its loop returns
        self.said_ready = False
        self.loop_ended = False
        self.disconnects = 0
        self.close_error: Exception | None = None

    async def connect(self) -> None:
        ready = asyncio.Event()
        self.became_ready = await self.receive_in_background(self._loop(ready), ready, self.ready_timeout)

    async def _loop(self, ready: asyncio.Event) -> None:
        if self.crash_before_ready:
            raise ValueError(f"bad handshake for {self.config.token}")
        await self.handshake.wait()
        ready.set()
        self.said_ready = True
        crashed = asyncio.create_task(self.crash.wait())
        closed = asyncio.create_task(self.closed.wait())
        await asyncio.wait({crashed, closed}, return_when=asyncio.FIRST_COMPLETED)
        crashed.cancel()
        closed.cancel()
        self.loop_ended = True
        if self.crash.is_set():
            raise ConnectionResetError("the socket closed")

    async def disconnect(self) -> None:
        self.disconnects += 1
        self.closed.set()
        if self.close_error is not None:
            raise self.close_error

    async def send_text(self, reply: Reply, text: str, part: int) -> None:
        raise AssertionError("nothing is sent in these tests")


async def test_start_waits_until_the_receive_loop_is_ready_and_stop_ends_it(redis, keys: Keys) -> None:
    adapter = LoopAdapter(Bus(redis, keys))
    async with adapter:
        assert adapter.became_ready is True and adapter.running
        assert not adapter.loop_ended
    assert adapter.loop_ended and adapter.disconnects == 1


async def test_a_loop_that_fails_before_ready_fails_the_start_in_one_redacted_line(redis, keys: Keys) -> None:
    adapter = LoopAdapter(Bus(redis, keys), crash_before_ready=True)
    with pytest.raises(DeliveryError) as caught:
        await adapter.start()
    assert str(caught.value) == "loop stopped receiving events: ValueError: bad handshake for <redacted>"
    assert adapter.error == str(caught.value) and not adapter.running
    assert adapter.disconnects >= 1  # the half-made client is closed


async def test_a_loop_that_dies_later_stops_the_adapter_and_disconnects(redis, keys: Keys) -> None:
    adapter = LoopAdapter(Bus(redis, keys))
    await adapter.start()
    adapter.crash.set()
    await wait_for(lambda: adapter.error is not None, what="the adapter to stop")
    assert adapter.error is not None and "ConnectionResetError: the socket closed" in adapter.error
    await wait_for(lambda: adapter.disconnects == 1, what="the disconnect")
    assert not adapter.running
    await adapter.stop()


async def test_a_loop_not_ready_in_time_is_reported_and_keeps_running(redis, keys: Keys) -> None:
    adapter = LoopAdapter(Bus(redis, keys), ready_timeout=0.0)
    adapter.handshake.clear()  # the platform is slow to say ready
    async with adapter:
        assert adapter.became_ready is False and adapter.running and not adapter.said_ready
        adapter.handshake.set()  # the loop carries on in the background
        await wait_for(lambda: adapter.said_ready, what="the loop to say ready")
        assert adapter.running and not adapter.loop_ended


async def test_an_error_while_closing_is_logged_not_raised(
    redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = LoopAdapter(Bus(redis, keys))
    await adapter.start()
    adapter.close_error = RuntimeError("session already closed")
    with caplog.at_level(logging.ERROR, logger="adapters.base"):
        await adapter.stop()  # does not raise: a shutdown is never left half way
    assert "loop: error while disconnecting" in caplog.text and "session already closed" in caplog.text
    assert adapter.loop_ended


async def test_the_sdks_child_loggers_are_redacted_while_running(
    redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    child = logging.getLogger("loopsdk.http.client")  # created by the SDK's import, before start
    caplog.set_level(logging.INFO)
    adapter = LoopAdapter(Bus(redis, keys))
    async with adapter:
        child.info("GET https://api.example.com/bot%s/getMe", "tok-123456")
        assert adapter.redact in child.filters and adapter.redact in logging.getLogger("loopsdk").filters
    assert "tok-123456" not in caplog.text and "/bot<redacted>/getMe" in caplog.text
    assert adapter.redact not in child.filters  # removed again on stop


async def test_connected_and_unreachable_say_one_line(redis, keys: Keys) -> None:
    adapter = LoopAdapter(Bus(redis, keys))
    with pytest.raises(DeliveryError, match=r"^the loop adapter is not connected$"):
        adapter.connected(None)
    assert adapter.connected("client") == "client"
    error = adapter.unreachable(
        "the Loop API", "https://api.example.com/v1", OSError("no route to tok-123456"), "LOOP_URL"
    )
    assert str(error) == (
        "cannot reach the Loop API at api.example.com (OSError: no route to <redacted>); "
        "check LOOP_URL and the network"
    )
