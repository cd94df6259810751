"""The shared backoff policy: retries what it should, waits what a 429 asks, gives up on the rest."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import AdapterAuthError, DeliveryError, RateLimited
from core.retry import Backoff, retrying

FAST = Backoff(first=0.0, cap=0.0, jitter=0.0)


async def test_retries_until_success() -> None:
    calls = 0
    async for attempt in retrying("test", backoff=FAST):
        with attempt:
            calls += 1
            if calls < 3:
                raise DeliveryError("flaky")
    assert calls == 3


async def test_give_up_on_raises_at_once() -> None:
    calls = 0
    with pytest.raises(AdapterAuthError):
        async for attempt in retrying("test", give_up_on=(AdapterAuthError,), backoff=FAST):
            with attempt:
                calls += 1
                raise AdapterAuthError("bad token")
    assert calls == 1


async def test_attempts_bound_reraises_last_error() -> None:
    with pytest.raises(DeliveryError, match="third"):
        n = 0
        async for attempt in retrying("test", attempts=3, backoff=FAST):
            with attempt:
                n += 1
                raise DeliveryError(["first", "second", "third"][n - 1])


async def test_rate_limited_waits_what_the_platform_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    calls = 0
    async for attempt in retrying("test", backoff=Backoff(first=5.0, cap=5.0, jitter=0.0)):
        with attempt:
            calls += 1
            if calls == 1:
                raise RateLimited(1.5)
            if calls == 2:
                raise DeliveryError("5xx")
    assert slept == [1.5, 5.0]
