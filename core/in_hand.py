"""The batches one engine answers at once (``CHATBOT_GENERATION=continuous``).

Each batch runs in a task of its own while the engine reads on. This keeps the entry ids
in hand (a re-read of the pending list must not start them twice), makes the reader wait
while ``limit`` entries are in hand, and hands a batch's Redis trouble back to the reader
loop, which waits it out with its backoff and reads the entries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from core.work import Entry


class InHand:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[int]] = set()
        self._ids: set[str] = set()
        self._freed = asyncio.Event()
        self._failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._ids

    async def room(self, stopping: asyncio.Event) -> int:
        """How many more entries may be taken; waits while none may (or until ``stopping``)."""
        while len(self._ids) >= self.limit and not stopping.is_set():
            self._freed.clear()
            await self._freed.wait()
        return max(1, self.limit - len(self._ids))

    def wake(self) -> None:
        """Let a reader waiting in :meth:`room` look again (the engine is stopping)."""
        self._freed.set()

    def failure(self) -> BaseException | None:
        """A batch's transient failure since the last call (raise it to back off), or None."""
        failure, self._failure = self._failure, None
        return failure

    def start(
        self,
        batch: list[Entry],
        answer: Coroutine[Any, Any, int],
        deferred: Callable[[int], None],
        rewind: Callable[[], None],
    ) -> None:
        """Run ``answer`` (it returns how many entries it left pending: ``deferred`` is
        told); when it fails, ``rewind`` so its entries are read again."""
        self._ids.update(entry_id for entry_id, _ in batch)
        task = asyncio.create_task(answer, name=f"batch-{batch[0][0]}")
        self._tasks.add(task)

        def done(task: asyncio.Task[int]) -> None:
            self._tasks.discard(task)
            self._ids.difference_update(entry_id for entry_id, _ in batch)
            self._freed.set()
            if task.cancelled():
                return
            failure = task.exception()
            if failure is None:
                deferred(task.result())
            else:  # transient (Redis, a lost lease): the entries stay pending
                rewind()
                self._failure = failure

        task.add_done_callback(done)

    async def finish(self) -> None:
        """Wait for every batch in hand; cancelled (a stop that ran out of time), cancel them."""
        tasks = list(self._tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
