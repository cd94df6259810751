"""Best-of-n: candidates written in one batch, the judge keeps the one about the intent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.best_of import BestOf, with_judge
from core.evaluation.judge import ResponseJudge, train_judge
from core.persona import GenerationSettings
from core.prompt import Dialogue
from core.protocols import GenerationRequest

CANCEL = [
    "To cancel your order, open Order History and click Cancel Order.",
    "I can help you cancel the order: go to My Orders and choose Cancel.",
    "Cancelling is easy: select the order in Order History, then Cancel Order.",
    "You can cancel the purchase from My Orders with the Cancel Order button.",
    "Please open Order History and press Cancel Order to cancel it.",
    "To cancel, sign in, open My Orders and click the Cancel Order option.",
]
TRACK = [
    "Your parcel is on its way; follow it under Track Order in your account.",
    "To track the package, open Order Tracking and enter the tracking code.",
    "You can see where your shipment is in Track Order on our website.",
    "Track your parcel in Order Tracking; it shows each delivery step.",
    "The package status is under Track Order, with the expected delivery date.",
    "Open Order Tracking to see where the shipment is right now.",
]


@dataclass
class Candidates:
    """Writes the next scripted candidate for each request, and records the batches."""

    script: list[str]
    batches: list[int] = field(default_factory=list)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.batches.append(len(requests))
        return [self.script.pop(0) for _ in requests]


@pytest.fixture(scope="module")
def judge() -> ResponseJudge:
    rows = [Dialogue("q", r, "cancel_order") for r in CANCEL] + [
        Dialogue("q", r, "track_order") for r in TRACK
    ]
    return train_judge(rows, held_out=0.2, seed=1)


def request(intent: str = "cancel_order", best_of: int = 3, do_sample: bool = True) -> GenerationRequest:
    settings = GenerationSettings(best_of=best_of, do_sample=do_sample)
    return GenerationRequest(text="please cancel my order", intent=intent, settings=settings)


def test_the_candidate_about_the_intent_is_sent_from_one_batch(judge: ResponseJudge) -> None:
    model = Candidates(
        [
            "Track your parcel in Order Tracking.",
            "Open Order History and click Cancel Order.",
            "",
            "hello there",
        ]
    )
    best = BestOf(model, judge)
    replies = best.generate([request(), request("track_order", best_of=1)])
    assert replies == ["Open Order History and click Cancel Order.", "hello there"]
    assert model.batches == [4]  # three candidates and the single reply, one call


def test_a_candidate_with_an_invented_number_or_a_bad_slot_loses(judge: ResponseJudge) -> None:
    model = Candidates(
        [
            "To cancel order 370795561790 open Order History and click Cancel Order.",
            "Open the the Order History and click Cancel Order to cancel it.",
            "Cancel it in My Orders.",
        ]
    )
    assert BestOf(model, judge).generate([request()]) == ["Cancel it in My Orders."]


@pytest.mark.parametrize(
    "req",
    [request(do_sample=False), request(best_of=1), request(intent="not_an_intent_it_knows")],
)
def test_one_candidate_when_greedy_single_or_unknown_intent(
    judge: ResponseJudge, req: GenerationRequest
) -> None:
    model = Candidates(["only", "never"])
    assert BestOf(model, judge).generate([req]) == ["only"]
    assert model.batches == [1]


def test_without_a_saved_judge_one_reply_is_written(tmp_path: Path, judge: ResponseJudge) -> None:
    model = Candidates(["first", "second", "third"])
    assert with_judge(model, tmp_path).generate([request()]) == ["first"]
    judge.save(tmp_path)
    picked = with_judge(Candidates(["hello", "Open Order History and click Cancel Order.", "hi"]), tmp_path)
    assert picked.generate([request()]) == ["Open Order History and click Cancel Order."]


class Streaming(BestOf):
    """A streaming reply model (as the continuous generator is): each submit returns a
    real ReplyStream whose tokens the test writes; token k renders as WORDS[k]."""

    def __init__(self, judge: ResponseJudge, words: list[str]) -> None:
        super().__init__(Candidates([]), judge)
        self.words = words
        self.streams: list[Any] = []

    def submit(self, request: GenerationRequest) -> Any:
        from core.batching.stream import ReplyStream

        stream = ReplyStream(
            lambda tokens, _limit: " ".join(self.words[t] for t in tokens), asyncio.get_running_loop()
        )
        self.streams.append(stream)
        return stream


async def test_best_of_candidates_stream_as_the_first_and_end_as_the_judges_pick(
    judge: ResponseJudge,
) -> None:
    from core.batching.jobs import Completion
    from core.best_of import submit

    words = [*TRACK[0].split(), *CANCEL[0].split()]
    track, cancel = list(range(len(TRACK[0].split()))), list(range(len(TRACK[0].split()), len(words)))
    model = Streaming(judge, words)
    stream = submit(model, request(best_of=2))
    first, second = model.streams
    assert len(model.streams) == 2 and not stream.done
    first.push(track[0])
    version = await stream.changed(0)
    assert stream.text_so_far() == words[0]  # the customer watches the first candidate
    first.finish(Completion(track, stopped=True))
    waiting = asyncio.ensure_future(stream.changed(stream.version))
    await asyncio.sleep(0.01)
    assert not waiting.done() and not stream.done  # the other candidate is still being written
    second.finish(Completion(cancel, stopped=True))
    assert await asyncio.wait_for(waiting, 1) > version and stream.done
    assert await stream.text() == CANCEL[0] == stream.text_so_far()  # about cancelling: the judge's pick
    single = submit(model, request(best_of=1))
    assert len(model.streams) == 3 and single is model.streams[-1]  # one candidate: the plain stream


async def test_a_reader_waiting_for_n_tokens_is_woken_once_not_per_token() -> None:
    from core.batching.jobs import Completion
    from core.batching.stream import ReplyStream

    stream = ReplyStream(lambda tokens, _limit: " ".join(map(str, tokens)), asyncio.get_running_loop())
    wakes: list[bool] = []
    wake = stream._wake
    stream._wake = lambda ended=False: (wakes.append(ended), wake(ended=ended))  # type: ignore[method-assign]
    waiting = asyncio.ensure_future(stream.changed(0, at_least=3))
    await asyncio.sleep(0)  # the reader is waiting now
    stream.push(7)
    stream.push(8)
    await asyncio.sleep(0)
    assert not waiting.done() and wakes == []  # two tokens: the reader's loop was not woken
    stream.push(9)
    assert await waiting == 3 and wakes == [False]  # the third wakes it, once
    later = asyncio.ensure_future(stream.changed(3, at_least=8))
    await asyncio.sleep(0)
    stream.finish(Completion([7, 8, 9, 10], stopped=True))
    assert await later == 4 and stream.text_so_far() == "7 8 9 10"  # the end wakes any reader


async def test_before_its_time_bound_a_reader_is_woken_by_its_own_timer_or_the_end_never_by_tokens() -> None:
    import time

    from core.batching.jobs import Completion
    from core.batching.stream import ReplyStream

    stream = ReplyStream(lambda tokens, _limit: " ".join(map(str, tokens)), asyncio.get_running_loop())
    wakes: list[bool] = []
    wake = stream._wake
    stream._wake = lambda ended=False: (wakes.append(ended), wake(ended=ended))  # type: ignore[method-assign]
    waiting = asyncio.ensure_future(stream.changed(0, at_least=2, not_before=time.monotonic() + 0.2))
    await asyncio.sleep(0)
    for token in (1, 2, 3):
        stream.push(token)
    await asyncio.sleep(0.05)
    assert not waiting.done() and wakes == []  # enough tokens, but too early: the model's thread kept quiet
    assert await asyncio.wait_for(waiting, 2) == 3 and wakes == []  # the loop's own timer woke it, with all 3
    bound = time.monotonic() + 30
    later = asyncio.ensure_future(stream.changed(3, at_least=8, not_before=bound))
    await asyncio.sleep(0)
    stream.push(4)
    stream.finish(Completion([1, 2, 3, 4], stopped=True))
    assert await asyncio.wait_for(later, 2) == 5 and wakes == [True]  # the end wakes it at once
    assert time.monotonic() < bound
