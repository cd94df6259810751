"""Backpressure at intake: who may queue a message right now.

Two checks, made when an adapter submits (``Adapter.submit``), before anything reaches
the intake stream or the models:

- a per-user rate limit (the ``limits`` library, a moving window kept in Redis, so every
  process shares one count): over it, the customer gets the persona's ``slow_down`` text;
- a bound on the intake backlog (entries not yet delivered to any worker): above it,
  new messages get the persona's ``busy`` text at once instead of waiting minutes.

The backlog is read at most once per ``backlog_cache_s`` per process (one XINFO GROUPS),
so a burst of submits costs one Redis call for it, not one each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import ConfigurationError
from redis.exceptions import ResponseError

from core.connection import limits_storage
from core.errors import ConfigError
from core.keys import Keys

ENGINE_GROUP = "engine"  # the group whose backlog counts (core.bus.ENGINE_GROUP)


class Verdict(StrEnum):
    """What admission decided; the value names the persona text that answers."""

    ADMIT = "admit"
    SLOW_DOWN = "slow_down"
    BUSY = "busy"


def parse_rate(value: str, setting: str) -> RateLimitItem | None:
    """``"10/minute"`` to a rate-limit item; empty means no limit."""
    if not value.strip():
        return None
    try:
        return parse(value)
    except (ValueError, ConfigurationError):
        raise ConfigError(
            f"invalid setting {setting}: {value!r} (write e.g. 10/minute, or leave it empty)"
        ) from None


class Admission:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        per_user: RateLimitItem | None = None,
        max_backlog: int = 0,
        backlog_cache_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.per_user = per_user
        self.max_backlog = max_backlog  # 0: no bound
        self.backlog_cache_s = backlog_cache_s
        self.clock = clock
        storage = limits_storage(redis, keys.intake_limits())
        self.limiter = MovingWindowRateLimiter(storage)
        self._backlog: tuple[float, int] | None = None  # (read at, entries)

    async def check(self, platform: str, user_id: str) -> Verdict:
        """Busy first (an overloaded engine answers nobody soon), then count one message
        against the user's window."""
        if self.max_backlog and await self.backlog() >= self.max_backlog:
            return Verdict.BUSY
        if self.per_user is not None and not await self.limiter.hit(self.per_user, platform, user_id):
            return Verdict.SLOW_DOWN
        return Verdict.ADMIT

    async def backlog(self) -> int:
        """Intake entries not yet delivered to any worker (the stream's length while no
        worker has ever read it)."""
        now = self.clock()
        if self._backlog is not None and now - self._backlog[0] < self.backlog_cache_s:
            return self._backlog[1]
        stream = self.keys.intake()
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:  # no stream yet: nothing waits
            groups = []
        engine = [g for g in groups if g["name"] == ENGINE_GROUP]
        lag = engine[0].get("lag") if engine else None
        if lag is not None:
            entries = int(lag)
        else:  # Redis cannot tell (no group yet, or deleted entries in the range): count, bounded
            after = f"({engine[0]['last-delivered-id']}" if engine else "-"
            bound = self.max_backlog or 1000
            waiting: Any = await self.redis.xrange(stream, min=after, max="+", count=bound)
            entries = len(waiting or [])
        self._backlog = (now, entries)
        return entries

    async def forget(self, platform: str, user_id: str) -> None:
        """Drop a user's rate-limit window (``history forget``)."""
        if self.per_user is not None:
            await self.limiter.clear(self.per_user, platform, user_id)
