"""Prompt encoding for the scheduler, three ways, each ending with every job's keys/values
right-aligned ((n, H, T, D) per layer, row i's prompt in its last ``len(prompt)``
columns) and the logits of its last prompt token, ready to join the running batch:

- ``whole``: whole prompts, left-padded, one forward;
- ``chunk``: the next piece of one long prompt into its own cache;
- ``resume``: prompts whose first tokens are in the prefix cache, one forward for all.
  Each row feeds the same number ``S`` of tokens (the longest uncached tail): row i
  takes its cached keys/values for ``prompt[:L_i - S]`` and re-encodes the rest, so
  rows stay contiguous and right-aligned; the few re-encoded tokens are the price of
  one batched forward instead of one forward per conversation.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import DynamicCache

from core.batching.jobs import Job, SchedulerStats
from core.batching.kv_cache import LayerKV, layer_kv, pad_left

Encoded = tuple[torch.Tensor, list[LayerKV], int]  # last logits (n, V), keys/values, width T


class Encoder:
    def __init__(self, model: Any, device: torch.device, cache_kw: str, stats: SchedulerStats) -> None:
        self.model = model
        self.device = device
        self.cache_kw = cache_kw  # transformers 5.x renamed `past_key_values` to `cache`
        self.stats = stats

    def whole(self, jobs: list[Job]) -> Encoded:
        """Whole prompts, left-padded, through one forward."""
        width = max(len(j.prompt_ids) for j in jobs)
        fed = [j.prompt_ids for j in jobs]
        logits, cache = self._forward(fed, [0] * len(jobs), width, DynamicCache(), past_width=0)
        for job in jobs:
            job.prefilled = len(job.prompt_ids)
        return logits, layer_kv(cache), width

    def resume(self, jobs: list[Job]) -> Encoded:
        """Prompts after their cached prefixes (``job.cached_kv``), through one forward."""
        tail = max(j.left for j in jobs)  # S: tokens every row feeds
        starts = [max(0, len(j.prompt_ids) - tail) for j in jobs]  # cached tokens each row keeps
        past_width = max(starts)
        past = DynamicCache()
        if past_width:  # per layer: every row's cached keys/values, cut to its start, left-padded
            per_layer = zip(*(j.cached_kv or [] for j in jobs), strict=True)
            past = DynamicCache([_stack(kv, starts, past_width) for kv in per_layer])
        fed = [j.prompt_ids[c:] for j, c in zip(jobs, starts, strict=True)]
        logits, cache = self._forward(fed, starts, tail, past, past_width)
        for job, start in zip(jobs, starts, strict=True):
            job.prefilled, job.reused, job.cached_kv = len(job.prompt_ids), start, None
            self.stats.reused_tokens += start
        return logits, layer_kv(cache), past_width + tail

    def chunk(self, job: Job, tokens: list[int]) -> torch.Tensor:
        """Feed one piece of a long prompt into the job's own cache; its last logits (1, V)."""
        if job.prefill_cache is None:
            job.prefill_cache = DynamicCache(job.cached_kv) if job.cached_kv else DynamicCache()
            job.reused, job.cached_kv = job.prefilled, None
            self.stats.reused_tokens += job.reused
        start = job.prefilled
        logits, _ = self._forward([tokens], [start], len(tokens), job.prefill_cache, start)
        job.prefilled += len(tokens)
        return logits

    def _forward(
        self, fed: list[list[int]], starts: list[int], width: int, past: DynamicCache, past_width: int
    ) -> tuple[torch.Tensor, DynamicCache]:
        """Rows of ``fed`` tokens right-aligned in ``width`` columns after ``past_width``
        cached columns, row i's cached part being its last ``starts[i]`` of them."""
        n = len(fed)
        input_ids = torch.zeros((n, width), dtype=torch.long)  # (n, S)
        positions = torch.zeros((n, width), dtype=torch.long)  # (n, S)
        attention = torch.zeros((n, past_width + width), dtype=torch.long)  # (n, P + S)
        for row, (tokens, start) in enumerate(zip(fed, starts, strict=True)):
            input_ids[row, width - len(tokens) :] = torch.tensor(tokens)
            positions[row, width - len(tokens) :] = torch.arange(start, start + len(tokens))
            attention[row, past_width - start : past_width] = 1
            attention[row, past_width + width - len(tokens) :] = 1
        started = time.perf_counter()
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            position_ids=positions.to(self.device),
            **{self.cache_kw: past},
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats.prefill_seconds += time.perf_counter() - started
        self.stats.encoded_tokens += sum(len(t) for t in fed)
        return out.logits[:, -1, :], past


def _stack(rows: tuple[LayerKV, ...], starts: list[int], width: int) -> LayerKV:
    """One layer's (k, v) of every row, row i cut to its first ``starts[i]`` tokens and
    right-aligned in ``width`` columns: (n, H, width, D) each."""
    keys = [pad_left(k[:, :, :c], width) for (k, _v), c in zip(rows, starts, strict=True)]
    values = [pad_left(v[:, :, :c], width) for (_k, v), c in zip(rows, starts, strict=True)]
    return torch.cat(keys), torch.cat(values)
