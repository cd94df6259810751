"""Continuous batching over a dense KV cache, for any HF causal LM with ``past_key_values``.

Each :meth:`ContinuousScheduler.step`:

1. admits waiting jobs in arrival order while the KV budget allows (a job that does
   not fit waits; nothing is ever evicted, so an admitted job always finishes);
2. prefills admitted prompts, at most ``prefill_chunk`` tokens per step, so a long
   prompt never stalls the running rows for long (whole prompts that fit go through
   one left-padded forward together; a longer one advances a chunk at a time); a
   prompt whose prefill is done samples its first token and joins the running batch;
3. runs one decoding step for every running row (one new token each, per-row
   sampling settings) and retires rows that wrote a stop token or reached their
   ``max_new_tokens``, at once.

History prefix reuse (``prefix_cache``): a job with a ``prefix_key`` starts its prefill
after the longest prefix its conversation's previous prompt and reply share with it,
from their cached keys/values, and a finished job leaves its own (prompt + reply) there
for the next turn (:mod:`core.batching.prefix_cache`).

Budget: the dense cache reserves ``rows x capacity`` token slots per layer, capacity
being the longest any running row can get (prompt + max_new_tokens). A job is admitted
only if, with it, ``rows x longest possible row`` still fits, prefills included, so the
cache never outgrows the budget and never needs to evict.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from core.batching.kv_cache import DenseKVCache, LayerKV, layer_kv
from core.batching.prefix_cache import PrefixCache, PrefixKey
from core.batching.sampling import Sampling, choose_tokens
from core.errors import ConfigError

log = logging.getLogger(__name__)


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
    prefilled: int = 0  # prompt tokens already in the job's own prefill cache
    prefill_cache: DynamicCache | None = None
    generator: torch.Generator | None = None
    prefix_key: PrefixKey | None = None  # the conversation whose prompt cache it may reuse
    reused: int = 0  # prompt tokens taken from the prefix cache
    epoch: int = 0  # the prefix cache's epoch when the job was admitted

    @property
    def longest(self) -> int:
        """The most cache slots this job can need: the last token is never fed back."""
        return len(self.prompt_ids) + self.max_new_tokens - 1


@dataclass
class SchedulerStats:
    steps: int = 0  # decoding steps
    peak_tokens: int = 0  # most KV token slots held at once (running batch + prefills)
    peak_rows: int = 0  # largest running batch
    finished: int = 0
    encoded_tokens: int = 0  # prompt tokens run through the model (reused ones excluded)
    reused_tokens: int = 0  # prompt tokens taken from the prefix cache
    prefill_seconds: float = 0.0  # time in prompt-encoding forwards


class ContinuousScheduler:
    """A running batch that jobs join and leave at every decoding step (single-threaded)."""

    def __init__(
        self,
        model: Any,
        *,
        kv_budget: int = 16_384,
        prefill_chunk: int = 256,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        if kv_budget < 1 or prefill_chunk < 1:
            raise ConfigError("kv_budget and prefill_chunk must be >= 1")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.vocab = vocab_size(model)
        self.kv_budget = kv_budget
        self.prefill_chunk = prefill_chunk
        self.waiting: deque[Job] = deque()
        self.prefilling: list[Job] = []
        self.running: list[Job] = []
        self.cache = DenseKVCache()
        self.seen = torch.zeros((0, self.vocab), dtype=torch.bool, device=self.device)  # (B, V)
        self.stats = SchedulerStats()
        self.prefixes = prefix_cache
        config = getattr(model, "config", None)
        self.context_window: int | None = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        )
        # transformers 5.x renamed the forward argument `past_key_values` to `cache`
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # ------------------------------------------------------------------ queue

    def submit(self, job: Job) -> None:
        """Queue a job; it waits until the KV budget has room for it."""
        self.check(job)
        if job.sampling.seed is not None:
            job.generator = torch.Generator(device=self.device).manual_seed(job.sampling.seed)
        self.waiting.append(job)

    def check(self, job: Job) -> None:
        """Refuse, in one line, a job that could never run: it would wait forever."""
        if not job.prompt_ids or job.max_new_tokens < 1:
            raise ConfigError("a job needs a non-empty prompt and max_new_tokens >= 1")
        if job.longest > self.kv_budget:
            raise ConfigError(
                f"a {len(job.prompt_ids)}-token prompt with max_new_tokens={job.max_new_tokens} "
                f"needs {job.longest} KV-cache tokens; the budget is {self.kv_budget}"
            )
        if self.context_window is not None and job.longest + 1 > self.context_window:
            raise ConfigError(
                f"a {len(job.prompt_ids)}-token prompt with max_new_tokens={job.max_new_tokens} "
                f"does not fit the model's {self.context_window}-token context"
            )

    def has_work(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running)

    def run_until_idle(self) -> None:
        while self.has_work():
            self.step()

    # ------------------------------------------------------------------ one step

    @torch.inference_mode()
    def step(self) -> None:
        self._admit()
        self._prefill()
        if self.running:
            self._decode()

    def _admit(self) -> None:
        while self.waiting:
            present = self.running + self.prefilling
            candidate = self.waiting[0]
            longest = max([j.longest for j in present] + [candidate.longest])
            if (len(present) + 1) * longest > self.kv_budget:
                return  # it waits (and so does everyone behind it: arrival order holds)
            job = self.waiting.popleft()
            self._reuse_prefix(job)
            self.prefilling.append(job)

    def _reuse_prefix(self, job: Job) -> None:
        """Start the job's prefill after its conversation's cached prefix, if any."""
        if self.prefixes is None or job.prefix_key is None:
            return
        job.epoch = self.prefixes.epoch
        n, kv = self.prefixes.lookup(job.prefix_key, job.prompt_ids)
        if n:
            job.prefill_cache = DynamicCache(kv)  # copies: the cached entry stays as it is
            job.prefilled = job.reused = n
            self.stats.reused_tokens += n

    def _prefill(self) -> None:
        """Up to ``prefill_chunk`` prompt tokens: whole prompts that fit go through one
        left-padded forward together; a longer prompt advances by one chunk on its own."""
        room = self.prefill_chunk
        whole: list[Job] = []
        for job in list(self.prefilling):
            left = len(job.prompt_ids) - job.prefilled
            if job.prefilled == 0 and left <= room:
                whole.append(job)
                room -= left
            elif room > 0:
                chunk = job.prompt_ids[job.prefilled : job.prefilled + room]
                room -= len(chunk)
                logits = self._prefill_chunk(job, chunk)
                if job.prefilled == len(job.prompt_ids):
                    assert job.prefill_cache is not None
                    kv = layer_kv(job.prefill_cache)
                    job.prefill_cache = None
                    self._join([job], logits, kv)
            if room == 0:
                break
        if whole:
            logits, kv = self._prefill_whole(whole)
            self._join(whole, logits, kv)

    def _prefill_whole(self, jobs: list[Job]) -> tuple[torch.Tensor, list[LayerKV]]:
        """One forward over whole prompts, left-padded: last logits (n, V) and their cache."""
        width = max(len(j.prompt_ids) for j in jobs)
        input_ids = torch.zeros((len(jobs), width), dtype=torch.long)  # (n, T)
        attention = torch.zeros((len(jobs), width), dtype=torch.long)  # (n, T)
        for row, job in enumerate(jobs):
            input_ids[row, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids)
            attention[row, width - len(job.prompt_ids) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # (n, T) each prompt starts at 0
        cache = DynamicCache()
        started = time.perf_counter()
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            position_ids=positions.to(self.device),
            **{self._cache_kw: cache},
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats.prefill_seconds += time.perf_counter() - started
        self.stats.encoded_tokens += sum(len(j.prompt_ids) for j in jobs)
        for job in jobs:
            job.prefilled = len(job.prompt_ids)
        self._note_peak(extra=len(jobs) * width)
        return out.logits[:, -1, :], layer_kv(cache)

    def _join(self, jobs: list[Job], logits: torch.Tensor, kv: list[LayerKV]) -> None:
        """Sample each prefilled job's first token; those not already done join the batch."""
        for job in jobs:
            self.prefilling.remove(job)
        seen = torch.zeros((len(jobs), self.vocab), dtype=torch.bool, device=self.device)  # (n, V)
        for row, job in enumerate(jobs):
            seen[row, torch.tensor(job.prompt_ids, device=self.device)] = True
        tokens = choose_tokens(logits, [j.sampling for j in jobs], seen, [j.generator for j in jobs])
        keep = [
            row
            for row, (job, token) in enumerate(zip(jobs, tokens, strict=True))
            if not self._record(job, token)
        ]
        if not keep:
            return
        for row in keep:
            seen[row, tokens[row]] = True
        index = torch.tensor(keep, device=self.device)
        self.running.extend(jobs[r] for r in keep)
        capacity = max(j.longest for j in self.running)
        self.cache.add_rows(
            [(k[index], v[index]) for k, v in kv], [len(jobs[r].prompt_ids) for r in keep], capacity
        )
        self.seen = torch.cat([self.seen, seen[index]])
        self._note_peak()

    def _prefill_chunk(self, job: Job, chunk: list[int]) -> torch.Tensor:
        """Feed one piece of a long prompt into the job's own cache; the last logits (1, V)."""
        if job.prefill_cache is None:
            job.prefill_cache = DynamicCache()
        start = job.prefilled
        input_ids = torch.tensor([chunk], device=self.device)  # (1, T)
        positions = torch.arange(start, start + len(chunk), device=self.device)[None]  # (1, T)
        attention = torch.ones((1, start + len(chunk)), dtype=torch.long, device=self.device)
        started = time.perf_counter()
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_kw: job.prefill_cache},
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats.prefill_seconds += time.perf_counter() - started
        self.stats.encoded_tokens += len(chunk)
        job.prefilled += len(chunk)
        self._note_peak()
        return out.logits[:, -1, :]  # (1, V)

    def _decode(self) -> None:
        last = torch.tensor([[j.tokens[-1]] for j in self.running], device=self.device)  # (B, 1)
        positions = torch.tensor([[n] for n in self.cache.lengths], device=self.device)  # (B, 1)
        attention = self.cache.grow()  # (B, W + 1)
        out = self.model(
            input_ids=last,
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_kw: self.cache.cache},
            use_cache=True,
        )
        self.stats.steps += 1
        self.stats.peak_rows = max(self.stats.peak_rows, len(self.running))
        self._note_peak()
        logits = out.logits[:, -1, :]  # (B, V)
        tokens = choose_tokens(
            logits, [j.sampling for j in self.running], self.seen, [j.generator for j in self.running]
        )
        keep = []
        for row, (job, token) in enumerate(zip(self.running, tokens, strict=True)):
            self.seen[row, token] = True
            if not self._record(job, token):
                keep.append(row)
        if len(keep) < len(self.running):
            self._keep_prefixes([r for r in range(len(self.running)) if r not in set(keep)])
            self.running = [self.running[i] for i in keep]
            self.seen = self.seen[keep]
            self.cache.keep_rows(keep, max((j.longest for j in self.running), default=0))

    def _keep_prefixes(self, rows: list[int]) -> None:
        """Leave the prompt + reply keys/values of finishing rows in the prefix cache."""
        if self.prefixes is None:
            return
        layers = None
        for row in rows:
            job = self.running[row]
            if job.prefix_key is None:
                continue
            layers = layers or self.cache.layers()  # (B, H, W, D) per layer
            n = self.cache.lengths[row]  # prompt + the reply tokens fed back so far
            kv = [(k[row : row + 1, :, -n:].clone(), v[row : row + 1, :, -n:].clone()) for k, v in layers]
            self.prefixes.store(job.prefix_key, (job.prompt_ids + job.tokens)[:n], kv, since=job.epoch)

    # ------------------------------------------------------------------ bookkeeping

    def _record(self, job: Job, token: int) -> bool:
        """Add a sampled token to its job; True when the job is finished (and reported)."""
        stopped = token in job.stop_ids
        if not stopped:
            job.tokens.append(token)
            if job.on_token is not None:
                _notify(job.on_token, token)
        if stopped or len(job.tokens) >= job.max_new_tokens:
            self.stats.finished += 1
            if job.on_finish is not None:
                _notify(job.on_finish, Completion(list(job.tokens), stopped))
            return True
        return False

    def _note_peak(self, extra: int = 0) -> None:
        """Track the most KV slots held: running batch, prefill caches, ``extra`` in flight."""
        prefill = sum(
            j.prefill_cache.get_seq_length() for j in self.prefilling if j.prefill_cache is not None
        )
        self.stats.peak_tokens = max(self.stats.peak_tokens, self.cache.tokens_held + prefill + extra)

    def fail_all(self, error: BaseException) -> None:
        """Report ``error`` to every job in flight and start over empty (after a model failure)."""
        for job in [*self.running, *self.prefilling, *self.waiting]:
            if job.on_finish is not None:
                job.on_finish(Completion(list(job.tokens), False, error))
        self.waiting.clear()
        self.prefilling, self.running = [], []
        self.cache = DenseKVCache()
        self.seen = self.seen[:0]


def _notify(callback: Callable[[Any], None], value: Any) -> None:
    """Run a job's callback; one broken reader must not stop every other row."""
    try:
        callback(value)
    except Exception:
        log.exception("a continuous-batching callback failed")
