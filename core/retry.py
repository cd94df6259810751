"""One backoff policy for every loop that waits out a passing failure.

The engine's intake loop, the outbox's delivery lanes and the adapters' intake (a
platform event arriving while Redis is down) all retry the same way: exponential backoff
with jitter, from ``first`` up to ``cap`` seconds, forever unless told otherwise, one log
line per wait. A :class:`~core.errors.RateLimited` error waits exactly the time the
platform asked for instead. Built on tenacity so nobody hand-writes a sleep loop again.

    async for attempt in retrying("telegram intake", retry_on=(RedisUnavailable,)):
        with attempt:
            await bus.submit(message)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)

from core.errors import RateLimited

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait between tries: ``first`` seconds, doubling up to ``cap``."""

    first: float = 0.2
    cap: float = 30.0
    jitter: float = 0.1


DEFAULT_BACKOFF = Backoff()


class _Wait:
    """Exponential backoff, except a 429 waits what the platform said."""

    def __init__(self, backoff: Backoff) -> None:
        self._exp = wait_exponential_jitter(initial=backoff.first, max=backoff.cap, jitter=backoff.jitter)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return exc.retry_after
        return float(self._exp(state))


def retrying(
    what: str,
    *,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
    backoff: Backoff = DEFAULT_BACKOFF,
    attempts: int | None = None,
) -> AsyncRetrying:
    """An async retry loop for ``what`` (named in the log line of each wait).

    Retries exceptions that are instances of ``retry_on`` but not of ``give_up_on``;
    anything else is raised at once. With ``attempts`` set, the last error is re-raised
    after that many tries; otherwise it retries until the task is cancelled.
    """

    def should_retry(exc: BaseException) -> bool:
        return isinstance(exc, retry_on) and not isinstance(exc, give_up_on)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, wait)

    return AsyncRetrying(
        retry=retry_if_exception(should_retry),
        wait=_Wait(backoff),
        stop=stop_after_attempt(attempts) if attempts else stop_never,
        before_sleep=before_sleep,
        reraise=True,
    )


__all__ = ["DEFAULT_BACKOFF", "Backoff", "retrying"]
