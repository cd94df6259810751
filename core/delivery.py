"""Delivering replies from a platform's outbound stream, in order per chat, with retries.

Each chat gets a lane (a queue and a worker) so a rate-limited or failing chat waits
alone while other conversations keep flowing. An entry is acknowledged only once the
platform took it, or refused it for good (:class:`PermanentDeliveryError`: dropped
with one log line); until then it stays pending in Redis, so a crash loses nothing and
a restart resends it. Waits follow ``core.retry``: a 429 waits what the platform asked,
anything else backs off; rejected credentials stop the outbox. A Redis outage is waited
out the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from core.bus import Bus
from core.cluster import REDIS_DOWN
from core.errors import AdapterAuthError, PermanentDeliveryError, RateLimited
from core.messages import Reply
from core.metrics import DELIVERY_RETRIES, observe_delivered
from core.retry import Backoff, retrying

log = logging.getLogger(__name__)

Deliver = Callable[[Reply], Awaitable[None]]
DEFAULT_DELIVERY_BACKOFF = Backoff(first=0.5, cap=30.0)


class Outbox:
    """Consumes ``{ns}:stream:outbound:{platform}:{bot}`` and calls ``deliver`` for each reply."""

    def __init__(
        self,
        bus: Bus,
        platform: str,
        bot_id: str,
        deliver: Deliver,
        *,
        consumer: str = "delivery-1",
        backoff: Backoff = DEFAULT_DELIVERY_BACKOFF,
        max_in_flight: int = 1000,
    ) -> None:
        self.bus = bus
        self.platform = platform
        self.bot_id = bot_id
        self.deliver = deliver
        self.consumer = consumer
        self.backoff = backoff
        self.max_in_flight = max_in_flight
        self._lanes: dict[str, asyncio.Queue[tuple[str, Reply]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._in_flight = 0
        self._in_flight_ids: set[str] = set()  # a re-read of pending entries skips these
        self._fatal: AdapterAuthError | None = None
        self.delivered = 0
        self.dropped = 0
        self.retries = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; raises :class:`AdapterAuthError` if the
        platform rejects our credentials (retrying cannot help)."""
        redis = retrying(f"{self.platform} outbound read", retry_on=REDIS_DOWN, backoff=self.backoff)
        try:
            while not stop.is_set():
                if self._fatal:
                    raise self._fatal
                if self._in_flight >= self.max_in_flight:
                    await asyncio.sleep(0.05)
                    continue
                entries: list[tuple[str, Reply]] = await redis(
                    self.bus.read_outbound, self.platform, self.bot_id, self.consumer, count=64, block_ms=500
                )
                for entry_id, reply in entries:
                    self._dispatch(entry_id, reply)
            if self._fatal:
                raise self._fatal
        finally:
            for task in self._workers.values():
                task.cancel()
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
            self._workers.clear()
            self._lanes.clear()
            self._in_flight_ids.clear()
            self._in_flight = 0

    def _dispatch(self, entry_id: str, reply: Reply) -> None:
        if entry_id in self._in_flight_ids:  # claimed entries are read with our pending ones
            return
        self._in_flight_ids.add(entry_id)
        lane = reply.chat_id
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = asyncio.Queue()
            self._workers[lane] = asyncio.create_task(self._work(lane, queue))
        self._in_flight += 1
        queue.put_nowait((entry_id, reply))

    async def _work(self, lane: str, queue: asyncio.Queue[tuple[str, Reply]]) -> None:
        ack = retrying(f"{self.platform} outbound ack", retry_on=REDIS_DOWN, backoff=self.backoff)
        while True:
            try:
                entry_id, reply = await asyncio.wait_for(queue.get(), timeout=30.0)
            except TimeoutError:
                if queue.empty():  # idle lane: let it go
                    self._lanes.pop(lane, None)
                    self._workers.pop(lane, None)
                    return
                continue
            try:
                await self._deliver_until_done(reply)
            except AdapterAuthError as exc:
                self._fatal = exc
                await asyncio.Event().wait()  # parked, reply unacknowledged, until run() cancels us
            except PermanentDeliveryError as exc:
                self.dropped += 1
                log.error("%s: reply %s to chat %s dropped: %s", self.platform, reply.reply_id, lane, exc)
            else:
                self.delivered += 1
                observe_delivered(reply, time.time())
            await ack(self.bus.ack_outbound, self.platform, self.bot_id, [entry_id], [reply.reply_id])
            self._in_flight_ids.discard(entry_id)
            self._in_flight -= 1

    async def _deliver_until_done(self, reply: Reply) -> None:
        """Retry every failure (an adapter's bug included: it must not lose the reply)
        except rejected credentials and a permanent refusal, which are raised."""
        policy = retrying(
            f"{self.platform} delivery",
            retry_on=(Exception,),
            give_up_on=(AdapterAuthError, PermanentDeliveryError),
            backoff=self.backoff,
        )
        async for attempt in policy:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.retries += 1
                try:
                    await self.deliver(reply)
                except (AdapterAuthError, PermanentDeliveryError):
                    raise
                except Exception as exc:  # retried: counted by platform and reason
                    reason = "rate_limited" if isinstance(exc, RateLimited) else "error"
                    DELIVERY_RETRIES.labels(self.platform, reason).inc()
                    raise
