"""Partials under load: one engine's partials stay under its cap per second, shared out
among the replies being written; the first text is never held back."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.batching.jobs import Completion
from core.batching.stream import ReplyStream
from core.messages import IncomingMessage
from core.partials import Partial
from core.streaming import Follower, Pacer, StreamPolicy
from tests.helpers import wait_for


def _message(user: str) -> IncomingMessage:
    return IncomingMessage("shop", "web", chat_id=user, user_id=user, text="hi")


def _render(tokens: list[int], hit_limit: bool) -> str:
    return " ".join(f"w{t}" for t in tokens)


def test_each_reply_waits_longer_once_the_replies_together_would_pass_the_cap() -> None:
    pacer = Pacer(StreamPolicy(every_tokens=8, every_s=0.1, max_per_s=150))
    assert pacer.interval() == 0.1
    pacer.pacing = 15  # 150 a second at 0.1 s each: still the cap
    assert pacer.interval() == 0.1
    pacer.pacing = 32
    assert pacer.interval() == pytest.approx(32 / 150)
    uncapped = Pacer(StreamPolicy(every_s=0.1, max_per_s=0))
    uncapped.pacing = 1_000
    assert uncapped.interval() == 0.1


async def test_followers_count_while_they_pace_and_stop_counting_when_done_or_cancelled() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(StreamPolicy(every_tokens=1, every_s=0.0, max_per_s=0))
    published: list[Partial] = []

    async def publish(partial: Partial) -> None:
        published.append(partial)

    streams = [ReplyStream(_render, loop) for _ in range(3)]
    followers = [
        Follower(_message(f"u{i}"), s, lambda text: text, publish, pacer) for i, s in enumerate(streams)
    ]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    await asyncio.sleep(0.05)
    assert pacer.pacing == 0  # nobody has published yet
    for stream in streams:
        stream.push(1)
    await wait_for(lambda: pacer.pacing == 3, what="three replies pacing")
    assert sorted(p.user_id for p in published) == ["u0", "u1", "u2"]  # first texts at once
    streams[0].finish(Completion([1, 2], stopped=True))
    await tasks[0]
    assert pacer.pacing == 2
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert pacer.pacing == 1
    streams[2].finish(Completion([1], stopped=True))
    await tasks[2]
    assert pacer.pacing == 0


class _Stream:
    """A token stream that records how long each wait asks to be held back."""

    def __init__(self, versions: int) -> None:
        self.version = 0
        self.versions = versions
        self.held_back: list[float] = []

    @property
    def done(self) -> bool:
        return self.version >= self.versions

    async def changed(self, seen: int, at_least: int = 1, not_before: float = 0.0) -> int:
        self.held_back.append(not_before - time.monotonic())
        self.version += max(1, at_least)
        return self.version

    def text_so_far(self) -> str:
        return "w " * self.version

    async def text(self) -> str:
        return self.text_so_far()


async def test_a_reply_spaces_its_partials_by_the_pacers_interval() -> None:
    pacer = Pacer(StreamPolicy(every_tokens=1, every_s=0.1, max_per_s=10))
    pacer.pacing = 19  # replies being written elsewhere; with this one, 20 at 10 a second

    async def publish(partial: Partial) -> None:
        return None

    stream = _Stream(versions=4)
    await Follower(_message("u1"), stream, lambda text: text, publish, pacer).run()
    first, *later = stream.held_back
    assert first <= 0  # the first text: at once
    assert later and all(1.9 < wait <= 2.0 for wait in later)  # 20 / 10 a second, not every_s
    assert pacer.pacing == 19
