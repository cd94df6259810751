"""Replies through continuous batching: the :class:`~core.protocols.ReplyModel` the
engine can use in place of :class:`~core.generator.Generator`'s fixed waves.

It reuses the generator's prompt building, reference masking and reply cleaning, so a
reply reads exactly as ``Generator.generate`` would write it (same greedy tokens), and
hands the token work to a :class:`~core.batching.backends.Backend`.

A request that names its conversation (``GenerationRequest.conversation``) may reuse the
cached keys/values of that conversation's previous prompt and reply (dense backend,
``prefix_budget`` tokens; :mod:`core.batching.prefix_cache`); ``forget`` drops a user's.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from core.batching.backends import Backend, DenseBackend, LibraryBackend, kv_budget_for, pick_backend
from core.batching.prefix_cache import PrefixKey
from core.batching.sampling import Sampling
from core.batching.scheduler import Completion, Job
from core.batching.stream import ReplyStream
from core.errors import ConfigError
from core.generator import Generator
from core.metrics import GENERATED_TOKENS
from core.prompt import INTENT, SYSTEM, USER
from core.protocols import GenerationRequest

BACKENDS = ("auto", "dense", "library")
PREFIX_BUDGET = 8_192  # tokens of recent conversations' prompts kept for reuse (dense backend)


class ContinuousGenerator:
    """Submit requests one by one as they come; each gets a :class:`ReplyStream`."""

    def __init__(self, generator: Generator, backend: Backend) -> None:
        self.generator = generator
        self.backend = backend
        self.stop_ids = frozenset(generator.stop_ids)
        tokens = generator.tokenizer.convert_tokens_to_ids([SYSTEM, INTENT, USER])
        self._system_id, self._intent_id, self._user_id = (int(t) if t is not None else -1 for t in tokens)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | None = None,
        backend: str = "auto",
        kv_budget: int | None = None,
        prefix_budget: int = PREFIX_BUDGET,
        int8: bool = False,
        packed: bool = False,
    ) -> ContinuousGenerator:
        """Load a model folder (``int8``: dynamic int8 Linear layers, CPU only; else
        ``packed``: float32 Linear layers through oneDNN on CPU, :mod:`core.packed_linear`)
        and start a backend (``kv_budget`` None: from the device, ``backends.kv_budget_for``)."""
        generator = Generator.from_pretrained(path, device=device)
        if int8:
            from core.quantize import quantize_int8

            generator = quantize_int8(generator)
        elif packed:
            from core.packed_linear import pack_linear_layers

            pack_linear_layers(generator.model)
        return cls.start(generator, backend=backend, kv_budget=kv_budget, prefix_budget=prefix_budget)

    @classmethod
    def start(
        cls,
        generator: Generator,
        *,
        backend: str = "auto",
        kv_budget: int | None = None,
        prefix_budget: int = PREFIX_BUDGET,
    ) -> ContinuousGenerator:
        """Run ``generator``'s model on the named backend ("auto" = :func:`pick_backend`;
        a dense one steps on the process's model lane, :mod:`core.lane`)."""
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        model: Any = generator.model
        chosen: Backend
        if kv_budget is None:
            kv_budget = kv_budget_for(generator.device, model)
        if backend == "auto":
            chosen = pick_backend(generator.device, model, kv_budget=kv_budget, prefix_budget=prefix_budget)
        elif backend == "library":
            chosen = LibraryBackend(model, kv_budget=kv_budget)
        else:
            chosen = DenseBackend(model, kv_budget=kv_budget, prefix_budget=prefix_budget)
        return cls(generator, chosen)

    def submit(self, request: GenerationRequest, *, seed: int | None = None) -> ReplyStream:
        """Queue one reply; it joins the running batch at the next decoding step it fits."""
        gen = self.generator
        max_new = gen.max_new_tokens(request.settings)
        prompt, values = gen.prompt_for(request, max_new)

        def render(tokens: list[int], hit_limit: bool) -> str:
            return gen.reply_text(tokens, values, hit_limit=hit_limit)

        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        stream = ReplyStream(render, loop)

        def finish(completion: Completion) -> None:
            # counted as Generator.generate counts: the tokens written, stop token included
            GENERATED_TOKENS.inc(len(completion.tokens) + int(completion.stopped))
            stream.finish(completion)

        self.backend.submit(
            Job(
                prompt_ids=prompt,
                max_new_tokens=max_new,
                stop_ids=self.stop_ids,
                sampling=Sampling.from_settings(request.settings, seed),
                on_token=stream.push,
                on_finish=finish,
                prefix_key=prefix_key(request),
                persona_tokens=self._persona_tokens(prompt),
            )
        )
        return stream

    def _persona_tokens(self, prompt: list[int]) -> int:
        """How many of the prompt's first tokens only the persona decides: the system
        segment ``<|system|>{style}`` up to ``<|intent|>`` (included) or the first
        ``<|user|>`` (core.prompt); 0 without one."""
        if not prompt or prompt[0] != self._system_id:
            return 0
        for i, token in enumerate(prompt):
            if token == self._intent_id:
                return i + 1
            if token == self._user_id:
                return i
        return 0

    def forget(self, platform: str, user_id: str) -> int:
        """Drop everything cached about a user's conversations (``history forget``); a
        reply being written for them meanwhile is not cached either. Thread-safe."""
        return self.backend.forget(platform, user_id)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """One cleaned reply per request (blocking; call it from a worker thread)."""
        streams = [self.submit(r) for r in requests]
        return [s.result() for s in streams]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> ContinuousGenerator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def prefix_key(request: GenerationRequest) -> PrefixKey | None:
    """The request's conversation plus a digest of what its persona puts in the prompt
    (style, generation settings), so an edited persona never reuses an old prefix."""
    if request.conversation is None:
        return None
    persona = hashlib.blake2b(
        f"{request.style}\x00{request.settings.model_dump_json()}".encode(), digest_size=8
    ).hexdigest()
    return PrefixKey(request.conversation.parts(), persona)
