"""Best-of-n: write several replies, send the one most about the customer's intent.

A persona that samples (``generation.do_sample``) may ask for ``generation.best_of``
candidates per message. :class:`BestOf` wraps any :class:`~core.protocols.ReplyModel`:
it asks the model for each candidate in the same batch, and keeps, per message, the
candidate the reply judge (``core.evaluation.judge``, saved beside the LM as
``judge.joblib``) rates most likely to serve the predicted intent; a candidate with
unfilled-slot phrasing or a number nobody wrote loses to one without. Greedy decoding
writes the same candidate n times, so it is never repeated; without a judge (or for an
intent the judge does not know) the first candidate is sent.

The cost is generation: n candidates make the batch n times as large
(docs/reply-quality.md has the gain and the latency on this machine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import ModelMissing
from core.evaluation.judge import ResponseJudge, has_unfilled_slot
from core.facts import AMOUNT, NUMBER, invented_items
from core.protocols import GenerationRequest, ReplyModel, StreamingReplyModel, TokenStream
from core.slots import fill_slots

log = logging.getLogger(__name__)


class BestOf:
    """A reply model that writes ``settings.best_of`` candidates and keeps the best."""

    def __init__(self, model: ReplyModel, judge: ResponseJudge | None) -> None:
        self.model = model
        self.judge = judge

    def __getattr__(self, name: str) -> Any:  # tokenizer, context_window, ... of the model
        return getattr(self.model, name)

    def candidates(self, request: GenerationRequest) -> int:
        """How many replies to write for ``request``."""
        settings = request.settings
        if settings.best_of < 2 or not settings.do_sample or self.judge is None:
            return 1
        return settings.best_of if request.intent in self.judge.labels else 1

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        counts = [self.candidates(r) for r in requests]
        if all(n == 1 for n in counts):
            return self.model.generate(requests)
        expanded = [r for r, n in zip(requests, counts, strict=True) for _ in range(n)]
        written = self.model.generate(expanded)
        out: list[str] = []
        start = 0
        for request, n in zip(requests, counts, strict=True):
            group = written[start : start + n]
            start += n
            out.append(group[self.best(request, group)] if n > 1 else group[0])
        return out

    def best(self, request: GenerationRequest, candidates: Sequence[str]) -> int:
        """The index of the candidate to send: no flaw first, then the judge's
        probability of the request's intent, then the earliest."""
        assert self.judge is not None
        probabilities = self.judge.intent_probability(candidates, request.intent)
        said = [t.text for t in request.history if t.role == "user"] + [request.text]

        def rank(k: int) -> tuple[bool, float, int]:
            text = candidates[k]
            filled = fill_slots(text, {})
            flawed = (
                not text.strip()
                or has_unfilled_slot(filled)
                or bool(invented_items(filled, said, kinds=(NUMBER, AMOUNT)))
            )
            return (not flawed, probabilities[k], -k)

        return max(range(len(candidates)), key=rank)


def submit(model: StreamingReplyModel, request: GenerationRequest) -> TokenStream:
    """Queue ``request`` on a streaming reply model; with best-of-n, its candidates side by
    side in the running batch, read as one :class:`BestOfStream`."""
    if not isinstance(model, BestOf) or model.candidates(request) <= 1:
        return model.submit(request)
    streams = [model.submit(request) for _ in range(model.candidates(request))]
    return BestOfStream(streams, lambda texts: model.best(request, texts))


class BestOfStream:
    """Candidates written side by side: while they run, the stream reads as the first
    one (so a customer watches a reply being written); once all are done, its text is
    the one ``pick`` chooses. When that is another candidate, the engine publishes the
    final text over the partials (``core.streaming.Follower.settle``)."""

    def __init__(self, streams: Sequence[TokenStream], pick: Callable[[Sequence[str]], int]) -> None:
        self.streams = list(streams)
        self._pick = pick
        self._final: str | None = None

    @property
    def done(self) -> bool:
        return all(s.done for s in self.streams)

    @property
    def version(self) -> int:
        """The first candidate's version, once more when every candidate is done."""
        return self.streams[0].version + int(self.done)

    async def changed(self, seen: int, at_least: int = 1, not_before: float = 0.0) -> int:
        while True:
            version = self.version
            ready = version - seen >= max(1, at_least) and time.monotonic() >= not_before
            if ready or (self.done and version != seen):
                return version
            first = self.streams[0]
            if not first.done:  # while it runs, this stream's version is the first's
                await first.changed(seen, at_least, not_before)
            else:  # the first is written; wait for the rest
                await asyncio.gather(*(s.text() for s in self.streams), return_exceptions=True)

    def text_so_far(self) -> str:
        if self._final is not None:
            return self._final
        if self.done:
            return self._choose([s.text_so_far() for s in self.streams])
        return self.streams[0].text_so_far()

    async def text(self) -> str:
        if self._final is None:
            self._choose([await s.text() for s in self.streams])
        assert self._final is not None
        return self._final

    def _choose(self, texts: Sequence[str]) -> str:
        self._final = texts[self._pick(texts)]
        return self._final


def load_reply_model(folder: Path | str, device: str | None = None) -> ReplyModel:
    """The LM in ``folder`` (``core.generator``) with best-of-n by its judge."""
    from core.generator import Generator

    return with_judge(Generator.from_pretrained(folder, device=device), folder)


def with_judge(model: ReplyModel, folder: Path | str) -> BestOf:
    """``model`` able to pick among candidates with the judge saved in ``folder`` (none
    there: it writes one reply per message, and says so once)."""
    try:
        judge: ResponseJudge | None = ResponseJudge.load(folder)
    except ModelMissing as exc:
        log.info("best-of-n is off for %s: %s", folder, exc)
        judge = None
    return BestOf(model, judge)
