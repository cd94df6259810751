"""What the scheduler works on: a :class:`Job` (one sequence to generate), its
:class:`Completion`, and the scheduler's running figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from core.batching.kv_cache import LayerKV
from core.batching.prefix_cache import PrefixKey
from core.batching.sampling import Sampling


def vocab_size(model: Any) -> int:
    """Rows of the input embedding (the output head may be quantised or tied)."""
    return int(model.get_input_embeddings().num_embeddings)


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished job: its new tokens without the stop token, and why it ended."""

    tokens: list[int]
    stopped: bool  # wrote a stop token (else it reached max_new_tokens)
    error: BaseException | None = None


@dataclass(eq=False)
class Job:
    """One sequence to generate; the callbacks run on the scheduler's thread."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop_ids: frozenset[int]
    sampling: Sampling = field(default_factory=Sampling)
    on_token: Callable[[int], None] | None = None
    on_finish: Callable[[Completion], None] | None = None
    tokens: list[int] = field(default_factory=list)  # generated so far (stop token excluded)
    prefilled: int = 0  # prompt tokens already in the job's own prefill cache (or cached_kv)
    prefill_cache: DynamicCache | None = None
    generator: torch.Generator | None = None
    prefix_key: PrefixKey | None = None  # the conversation whose prompt cache it may reuse
    persona_tokens: int = 0  # the prompt's first tokens that only its persona decides (shareable)
    cached_kv: list[LayerKV] | None = None  # its first ``prefilled`` tokens, from the prefix cache
    reused: int = 0  # prompt tokens not encoded thanks to the prefix cache
    epoch: int = 0  # the prefix cache's epoch when the job was admitted

    @property
    def longest(self) -> int:
        """The most cache slots this job can need: the last token is never fed back."""
        return len(self.prompt_ids) + self.max_new_tokens - 1

    @property
    def left(self) -> int:
        """Prompt tokens still to encode."""
        return len(self.prompt_ids) - self.prefilled


@dataclass
class SchedulerStats:
    steps: int = 0  # decoding steps
    peak_tokens: int = 0  # most KV token slots held at once (running batch + prefills)
    peak_rows: int = 0  # largest running batch
    finished: int = 0
    encoded_tokens: int = 0  # prompt tokens run through the model
    reused_tokens: int = 0  # prompt tokens taken from the prefix cache instead
    prefill_seconds: float = 0.0  # time in prompt-encoding forwards
