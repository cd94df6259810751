"""Continuous batching over a dense KV cache, for any HF causal LM with ``past_key_values``.

Each :meth:`ContinuousScheduler.step`:

1. admits waiting jobs in arrival order while the KV budget and ``max_rows`` allow (a
   job that does not fit waits; nothing is ever evicted, so an admitted job always
   finishes);
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
for the next turn, and the first prompt of each persona leaves its persona segment there
for every other conversation to start from (:mod:`core.batching.prefix_cache`).

Decoding steps write into a :class:`~core.batching.kv_cache.SlotKVCache` (nothing moves
when rows join or leave); on CPU a model on SDPA is switched to
:mod:`core.batching.attention` and a plain GPT-2 runs :mod:`core.batching.gpt2_step`.

Budget: the slot cache reserves ``slots x capacity`` token slots per layer, capacity
being the longest any running row can get (prompt + max_new_tokens). A job is admitted
only if, with it, ``rows x longest possible row`` still fits, prefills included; slots
that finished rows left are given back first when the new prompt would not fit beside
them. So the cache never outgrows the budget and never needs to evict.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from core.batching import gpt2_step
from core.batching.attention import NAME as DECODE_ATTENTION
from core.batching.attention import use_decode_attention
from core.batching.jobs import Completion, Job, SchedulerStats, vocab_size
from core.batching.kv_cache import LayerKV, SlotKVCache, layer_kv
from core.batching.prefill import Encoder
from core.batching.prefix_cache import PrefixCache
from core.batching.sampling import choose_tokens
from core.errors import ConfigError

__all__ = ["Completion", "ContinuousScheduler", "Job", "SchedulerStats", "vocab_size"]

log = logging.getLogger(__name__)


class ContinuousScheduler:
    """A running batch that jobs join and leave at every decoding step (single-threaded)."""

    def __init__(
        self,
        model: Any,
        *,
        kv_budget: int = 16_384,
        prefill_chunk: int = 256,
        prefix_cache: PrefixCache | None = None,
        max_rows: int | None = None,
    ) -> None:
        if kv_budget < 1 or prefill_chunk < 1 or (max_rows is not None and max_rows < 1):
            raise ConfigError("kv_budget, prefill_chunk and max_rows must be >= 1")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.kv_budget = kv_budget
        self.prefill_chunk = prefill_chunk
        self.max_rows = max_rows  # rows decoding or prefilling at once; None: the KV budget decides
        self.waiting: deque[Job] = deque()
        self.prefilling: list[Job] = []
        self.running: list[Job] = []
        config = getattr(model, "config", None)
        self._attention = use_decode_attention(model)  # on CPU: two matmuls per one-query step
        # a plain GPT-2 on that attention: decoding steps skip transformers' forward wrapping
        self._gpt2_step = self._attention == DECODE_ATTENTION and gpt2_step.fits(model)
        self.cache = SlotKVCache(self._attention)
        self.stats = SchedulerStats()
        self.prefixes = prefix_cache
        self.context_window: int | None = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        )
        # transformers 5.x renamed the forward argument `past_key_values` to `cache`
        params = inspect.signature(model.forward).parameters
        cache_kw = "cache" if "cache" in params else "past_key_values"
        self._cache_kw = cache_kw
        self.encoder = Encoder(self.model, self.device, cache_kw, self.stats)

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
            if self.max_rows is not None and len(present) >= self.max_rows:
                return  # a bigger batch would only make each step slower (CPU_MAX_ROWS)
            candidate = self.waiting[0]
            longest = max([j.longest for j in present] + [candidate.longest])
            if (len(present) + 1) * longest > self.kv_budget:
                return  # it waits (and so does everyone behind it: arrival order holds)
            if self.cache.tokens_held + (len(self.prefilling) + 1) * longest > self.kv_budget:
                # slots finished rows left are memory too: give them back before it prefills
                self.cache.release_idle(max((j.longest for j in self.running), default=0))
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
            job.prefilled, job.cached_kv = n, kv  # the encoder resumes after them

    def _prefill(self) -> None:
        """Up to ``prefill_chunk`` prompt tokens: whole prompts that fit go through one
        left-padded forward together, so do prompts resumed after a cached prefix; a
        longer prompt advances by one chunk on its own."""
        room = self.prefill_chunk
        whole: list[Job] = []
        resumed: list[Job] = []
        for job in list(self.prefilling):
            if job.cached_kv is not None and job.left <= self.prefill_chunk:
                cost = (len(resumed) + 1) * max(j.left for j in [*resumed, job])
                if cost - _cost(resumed) <= room:  # the batch's tail grows for everyone
                    room -= cost - _cost(resumed)
                    resumed.append(job)
                continue  # else it waits for the next step, with its cached prefix
            if job.prefilled == 0 and job.left <= room:
                whole.append(job)
                room -= job.left
            elif room > 0:
                chunk = job.prompt_ids[job.prefilled : job.prefilled + room]
                room -= len(chunk)
                logits = self.encoder.chunk(job, chunk)
                self._note_peak()
                if job.left == 0:
                    assert job.prefill_cache is not None
                    kv = layer_kv(job.prefill_cache)
                    job.prefill_cache = None
                    self._join([job], logits, kv)
            if room == 0:
                break
        for group, encode in ((whole, self.encoder.whole), (resumed, self.encoder.resume)):
            if group:
                logits, kv, width = encode(group)
                self._note_peak(extra=len(group) * width)
                self._join(group, logits, kv)

    def _join(self, jobs: list[Job], logits: torch.Tensor, kv: list[LayerKV]) -> None:
        """Sample each prefilled job's first token; those not already done join the batch."""
        for job in jobs:
            self.prefilling.remove(job)
        longest = max(len(j.prompt_ids) for j in jobs)
        history = torch.tensor(  # (n, L): each prompt, padded with its own first token
            [j.prompt_ids + j.prompt_ids[:1] * (longest - len(j.prompt_ids)) for j in jobs],
            device=self.device,
        )
        tokens = choose_tokens(logits, [j.sampling for j in jobs], history, [j.generator for j in jobs])
        keep = [
            row
            for row, (job, token) in enumerate(zip(jobs, tokens, strict=True))
            if not self._record(job, token)
        ]
        if not keep:
            return
        self._keep_persona_segments(jobs, kv, keep)
        self.running.extend(jobs[r] for r in keep)
        capacity = max(j.longest for j in self.running)
        self.cache.add_rows(kv, keep, [jobs[r].prompt_ids for r in keep], capacity)
        self._note_peak()

    def _decode(self) -> None:
        last = torch.tensor([[j.tokens[-1]] for j in self.running], device=self.device)  # (B, 1)
        positions, attention = self.cache.step(last)  # (B, 1), the mask over W + 1 columns
        if self._gpt2_step:
            logits = gpt2_step.decode_step(self.model, last, positions, self.cache, attention)  # (B, V)
        else:
            out = self.model(
                input_ids=last,
                attention_mask=attention,
                position_ids=positions,
                **{self._cache_kw: self.cache.cache},
                use_cache=True,
            )
            logits = out.logits[:, -1, :]  # (B, V)
        self.stats.steps += 1
        self.stats.peak_rows = max(self.stats.peak_rows, len(self.running))
        self._note_peak()
        tokens = choose_tokens(
            logits,
            [j.sampling for j in self.running],
            self.cache.history(),
            [j.generator for j in self.running],
        )
        done = [
            row
            for row, (job, token) in enumerate(zip(self.running, tokens, strict=True))
            if self._record(job, token)
        ]
        if done:
            self._keep_prefixes(done)
            for source, target in self.cache.drop_rows(done):  # the last row fills each gap
                self.running[target] = self.running[source]
            del self.running[self.cache.rows :]

    def _keep_persona_segments(self, jobs: list[Job], kv: list[LayerKV], rows: list[int]) -> None:
        """Leave the persona segment of a prefilled prompt (right-aligned in ``kv``) in
        the prefix cache, once per persona, for every other conversation to start from."""
        if self.prefixes is None:
            return
        width = kv[0][0].size(-2)
        for row in rows:
            job = jobs[row]
            n = min(job.persona_tokens, len(job.prompt_ids) - 1)
            if job.prefix_key is None or n < 1 or self.prefixes.has_persona(job.prefix_key.persona):
                continue
            start = width - len(job.prompt_ids)
            part = slice(start, start + n)
            segment = [(k[row : row + 1, :, part].clone(), v[row : row + 1, :, part].clone()) for k, v in kv]
            self.prefixes.store_persona(job.prefix_key.persona, job.prompt_ids[:n], segment)

    def _keep_prefixes(self, rows: list[int]) -> None:
        """Leave the prompt + reply keys/values of finishing rows in the prefix cache."""
        if self.prefixes is None:
            return
        for row in rows:
            job = self.running[row]
            if job.prefix_key is None:
                continue
            n = self.cache.lengths[row]  # prompt + the reply tokens fed back so far
            kv = self.cache.row_kv(row)  # (1, H, n, D) per layer
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
        self.cache = SlotKVCache(self._attention)


def _cost(resumed: list[Job]) -> int:
    """Tokens one resumed batch feeds: every row as many as the longest tail."""
    return len(resumed) * max((j.left for j in resumed), default=0)


def _notify(callback: Callable[[Any], None], value: Any) -> None:
    """Run a job's callback; one broken reader must not stop every other row."""
    try:
        callback(value)
    except Exception:
        log.exception("a continuous-batching callback failed")
