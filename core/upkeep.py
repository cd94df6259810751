"""Keeping one stream healthy from the process that reads it, on a timer.

Every ``interval_s`` a :class:`StreamUpkeep`:

- claims entries another consumer of its group left pending for ``claim_idle_ms``
  (a worker or adapter that was killed) and makes its own consumer read them next;
- trims the entries every group has acknowledged (``Bus.trim``: never an unread or
  pending one), which is the streams' only bound;
- forgets consumers that hold nothing and have been silent for ``forget_after_ms``;
- updates the stream gauges (depth, lag, pending; dead letters for the intake) in
  ``core.metrics``;
- runs the caller's ``also`` hook (the worker re-seeds missing personas there, for a
  Redis that came back empty).

A Redis outage is waited out with ``core.retry``'s backoff; the loop never ends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core import metrics
from core.bus import Bus
from core.cluster import REDIS_DOWN
from core.retry import Backoff, retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpkeepConfig:
    interval_s: float = 5.0
    claim_idle_ms: int = 60_000  # longer than the slowest batch, or live work is taken
    forget_after_ms: int = 3_600_000
    trim: bool = True
    backoff: Backoff = Backoff(first=0.5, cap=10.0)  # noqa: RUF009 (frozen: shared safely)


@dataclass(slots=True)
class UpkeepTally:
    claimed: int = 0
    trimmed: int = 0
    rounds: int = 0


class StreamUpkeep:
    """Upkeep of ``stream`` for ``consumer`` of ``group``; ``async with`` runs it."""

    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        consumer: str,
        config: UpkeepConfig = UpkeepConfig(),
        *,
        also: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.config = config
        self.also = also
        self.tally = UpkeepTally()
        self._label = metrics.stream_label(stream, bus.keys.namespace)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> None:
        """One round: claim, trim, forget, measure, hook."""
        if self.also is not None:
            await self.also()
        claimed = await self.bus.claim_stale(
            self.stream, self.group, self.consumer, min_idle_ms=self.config.claim_idle_ms
        )
        if claimed:
            log.warning("%s: took over %d entries a stopped consumer left pending", self._label, len(claimed))
            metrics.STREAM_CLAIMED.labels(self._label, self.group).inc(len(claimed))
            self.tally.claimed += len(claimed)
            self.bus.rewind(self.stream, self.consumer)  # read them on the next read
        if self.config.trim:
            self.tally.trimmed += await self.bus.trim(self.stream)
        await self.bus.forget_idle_consumers(self.stream, self.group, self.config.forget_after_ms)
        if self.stream == self.bus.keys.intake():
            metrics.DEAD_LETTERS.set(await self.bus.redis.xlen(self.bus.keys.dead_letters()))
        for g in await self.bus.stats(self.stream):
            metrics.STREAM_LENGTH.labels(self._label).set(g.length)
            metrics.STREAM_LAG.labels(self._label, g.group).set(g.lag)
            metrics.STREAM_PENDING.labels(self._label, g.group).set(g.pending)
        self.tally.rounds += 1

    async def _run(self) -> None:
        while not self._stop.is_set():
            async for attempt in retrying(
                f"{self._label} upkeep", retry_on=REDIS_DOWN, backoff=self.config.backoff
            ):
                with attempt:
                    await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.interval_s)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"upkeep-{self._label}")

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> StreamUpkeep:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
