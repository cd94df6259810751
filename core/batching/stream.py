"""One reply as it is written: tokens arrive on a model thread, readers await them.

A :class:`ReplyStream` yields the reply *so far*, cleaned the way the final reply is,
each time new tokens arrived since the reader last looked (a slow reader, e.g. one that
edits a chat message at a platform's rate limit, skips to the newest text). The last
text it yields is exactly the final reply, which :meth:`ReplyStream.text` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable

from core.batching.scheduler import Completion

Render = Callable[[list[int], bool], str]  # (new tokens, finished at the limit) -> reply text
_NEVER = 1 << 62  # a version no stream reaches: no token wakes the reader


class ReplyStream:
    """Tokens of one job and the reply they make; written by one thread, read from any."""

    def __init__(self, render: Render, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._render = render
        self._loop = loop
        self._lock = threading.Lock()
        self._tokens: list[int] = []
        self._version = 0  # bumped per token and at the end, so readers know what is new
        self._wake_at = 1  # the version at which a token wakes the reader (see ``changed``)
        self._done = threading.Event()
        self._final: str | None = None
        self._error: BaseException | None = None
        self._changed = asyncio.Event() if loop is not None else None
        self._ended = asyncio.Event() if loop is not None else None

    # ------------------------------------------------------------------ writer side

    def push(self, token: int) -> None:
        with self._lock:
            self._tokens.append(token)
            self._version += 1
            wake = self._version >= self._wake_at
        if wake:  # else nobody waits for this token: no hop to the reader's loop
            self._wake()

    def finish(self, completion: Completion) -> None:
        if completion.error is None:
            final = self._render(completion.tokens, not completion.stopped)
        with self._lock:
            self._tokens = list(completion.tokens)
            self._error = completion.error
            self._final = final if completion.error is None else None
            self._version += 1
        self._done.set()
        self._wake(ended=True)

    def _wake(self, *, ended: bool = False) -> None:
        if self._loop is None or self._changed is None or self._ended is None:
            return
        with contextlib.suppress(RuntimeError):  # the reader's loop is gone: nobody to wake
            self._loop.call_soon_threadsafe(self._set_events if ended else self._changed.set)

    def _set_events(self) -> None:
        """On the reader's loop, at the end: one hop wakes both kinds of reader."""
        assert self._changed is not None and self._ended is not None
        self._changed.set()
        self._ended.set()

    # ------------------------------------------------------------------ reader side

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def tokens(self) -> list[int]:
        with self._lock:
            return list(self._tokens)

    def result(self, timeout: float | None = None) -> str:
        """The final reply, blocking this thread until it is written."""
        if not self._done.wait(timeout):
            raise TimeoutError("the reply was not finished in time")
        return self._final_or_raise()

    @property
    def version(self) -> int:
        """Bumped per token and once at the end: what :meth:`changed` compares against."""
        with self._lock:
            return self._version

    async def changed(self, seen: int, at_least: int = 1, not_before: float = 0.0) -> int:
        """Wait until the stream is ``at_least`` versions past ``seen`` (new tokens) and
        the ``time.monotonic()`` instant ``not_before`` has passed, or it ended; return
        the new version. A reader that renders only now and then (``text_so_far``) so
        skips the rendering of every token in between. Until ``not_before`` the reader's
        own loop keeps the time (a timer) and tokens do not wake it, only the end does:
        each wake from the model's thread is a write to the loop's socket, which then
        waits for the GIL the loop holds (0.3 ms a wake in a one-off count under
        ``benchmarks.engine`` at 32 customers)."""
        if self._changed is None:
            raise RuntimeError("this stream was created outside an event loop; use result()")
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            early = not_before - time.monotonic()
            with self._lock:
                version = self._version
                if (version - seen >= max(1, at_least) and early <= 0) or (
                    version != seen and self._done.is_set()
                ):
                    return version
                # before not_before: only the end wakes this loop from the model's thread
                self._wake_at = seen + max(1, at_least) if early <= 0 else _NEVER
            timer = loop.call_later(early, self._changed.set) if early > 0 else None
            try:
                await self._changed.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def text_so_far(self) -> str:
        """The reply so far, cleaned the way the final reply is (the final reply once done)."""
        with self._lock:
            tokens, done = list(self._tokens), self._done.is_set()
        return self._final_or_raise() if done else self._render(tokens, False)

    async def text(self) -> str:
        """The final reply (awaits the end of generation, rendering nothing before it)."""
        if self._ended is None:
            raise RuntimeError("this stream was created outside an event loop; use result()")
        if not self._done.is_set():
            await self._ended.wait()
        return self._final_or_raise()

    async def __aiter__(self) -> AsyncIterator[str]:
        if self._changed is None:
            raise RuntimeError("this stream was created outside an event loop; use result()")
        seen_version, last = -1, None
        while True:
            self._changed.clear()
            with self._lock:
                version, tokens, done = self._version, list(self._tokens), self._done.is_set()
            if done:
                final = self._final_or_raise()
                if final != last:
                    yield final
                return
            if version != seen_version:
                seen_version = version
                text = self._render(tokens, False)
                if text and text != last:
                    last = text
                    yield text
                continue
            with self._lock:
                self._wake_at = version + 1  # every token
            await self._changed.wait()

    def _final_or_raise(self) -> str:
        if self._error is not None:
            raise self._error
        assert self._final is not None
        return self._final
