"""Where jobs run: our dense-cache scheduler, or transformers' paged continuous batching.

Both take :class:`~core.batching.scheduler.Job` objects and call their ``on_token`` /
``on_finish`` callbacks from their own thread, so the reply service above them does not
know which one runs. :func:`pick_backend` chooses per device: on CPU the library's
manager measured 1.2x the one-``generate``-per-request baseline (issue 12) while a
dense batch measured 8.3x, so CPU gets ours; on CUDA the library's paged attention
(flash/SDPA kernels, CUDA graphs) is the one expected to win.

On CUDA the weights are bf16 (fp16 without bf16 support; ``core.device.pick_dtype``),
the paged cache is allocated once at the size of the KV budget (a static cache) and
the decoding step runs as a captured CUDA graph; the budget defaults to the tokens that
fit in 80% of the device's free memory once the weights are loaded
(:func:`kv_budget_for`). ``benchmarks/gpu.py`` measures the choice on a GPU.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import torch

from core.batching.attention import NAME as DECODE_ATTENTION
from core.batching.prefix_cache import PrefixCache
from core.batching.scheduler import Completion, ContinuousScheduler, Job, vocab_size
from core.lane import Lane, shared_lane

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str

    def submit(self, job: Job) -> None:
        """Queue a job; its callbacks fire from the backend's thread."""
        ...

    def close(self) -> None:
        """Stop the worker thread; unfinished jobs are failed."""
        ...

    def forget(self, platform: str, user_id: str) -> int:
        """Drop a user's cached prompt prefixes; returns how many conversations went."""
        ...


class DenseBackend:
    """:class:`ContinuousScheduler` stepped by a :class:`~core.lane.Lane` (the process's
    shared one unless told otherwise), which sleeps when nothing is left to do."""

    name = "dense"

    def __init__(
        self,
        model: Any,
        *,
        kv_budget: int = 16_384,
        prefill_chunk: int = 256,
        prefix_budget: int = 0,
        lane: Lane | None = None,
        max_rows: int | None = None,
    ) -> None:
        # prefix_budget: tokens of recent conversations' prompts kept for reuse (0 = off);
        # max_rows: rows at once, None: CPU_MAX_ROWS on CPU, elsewhere only the KV budget
        self.prefixes = PrefixCache(prefix_budget) if prefix_budget > 0 else None
        if max_rows is None and _device_of(model).type == "cpu":
            max_rows = CPU_MAX_ROWS
        self.scheduler = ContinuousScheduler(
            model,
            kv_budget=kv_budget,
            prefill_chunk=prefill_chunk,
            prefix_cache=self.prefixes,
            max_rows=max_rows,
        )
        self._inbox_lock = threading.Lock()
        self._inbox: list[Job] = []
        self._closed = False
        self.lane = lane if lane is not None else shared_lane()
        self.lane.attach(self)

    def submit(self, job: Job) -> None:
        # Validate on the caller's thread so a request that can never fit fails where it was made.
        self.scheduler.check(job)
        with self._inbox_lock:
            if self._closed:
                raise RuntimeError("the generation backend is closed")
            self._inbox.append(job)
        self.lane.wake()

    def close(self) -> None:
        """Fail what is unfinished and leave the lane."""
        if self._closed:
            return

        def leave() -> None:
            self.lane.detach(self)
            with self._inbox_lock:
                self._closed = True
                left, self._inbox = self._inbox, []
            closed = RuntimeError("the generation backend was closed")
            self.scheduler.fail_all(closed)
            for job in left:
                if job.on_finish is not None:
                    job.on_finish(Completion([], False, closed))

        self.lane.run(leave)
        if self.prefixes is not None:
            self.prefixes.clear()

    def forget(self, platform: str, user_id: str) -> int:
        return self.prefixes.forget(platform, user_id) if self.prefixes is not None else 0

    # -- core.lane.Stepper: called on the lane's thread only ------------------------------
    def has_work(self) -> bool:
        return bool(self._inbox) or self.scheduler.has_work()

    def step(self) -> None:
        with self._inbox_lock:
            jobs, self._inbox = self._inbox, []
        try:
            for job in jobs:
                self.scheduler.submit(job)
            self.scheduler.step()
        except Exception as exc:  # a broken model must not hang every waiting reply
            log.exception("continuous batching step failed")
            self.scheduler.fail_all(exc)


class LibraryBackend:
    """transformers' ``ContinuousBatchingManager`` (paged attention) behind the same job API.

    Per-request temperature, top-k and top-p are the library's own per-request logits
    processors; a greedy request is sampled with top-k 1, which is the argmax. The
    library drops the repetition penalty (it needs each request's whole history), so it
    is not applied on this backend. ``kv_budget`` becomes the paged cache's size.
    """

    name = "library"

    def __init__(
        self,
        model: Any,
        *,
        kv_budget: int = 16_384,
        page_size: int = 32,
        cuda_graphs: bool | None = None,
    ) -> None:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        self.model = model
        if getattr(model.config, "_attn_implementation", None) == DECODE_ATTENTION:
            model.set_attn_implementation("sdpa")  # a dense scheduler had it; the library needs its own
        # Non-default values make the library build the temperature/top-k/top-p processors,
        # whose per-request versions then read each request's own values.
        generation = GenerationConfig(
            do_sample=True, temperature=0.7, top_k=50, top_p=0.9, max_new_tokens=64, eos_token_id=-1
        )
        config = ContinuousBatchingConfig(
            per_request_processors=True,
            num_blocks=max(1, kv_budget // page_size),
            page_size=page_size,
            allow_block_sharing=False,
            # (prefill, decode) graphs; None leaves it to the library (off without flash attention)
            use_cuda_graph=_cuda_graphs(_device_of(model), cuda_graphs),
        )
        self.manager = model.init_continuous_batching(
            generation_config=generation, continuous_batching_config=config
        )
        self.manager.start()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._closed = False
        self._pump = threading.Thread(target=self._deliver, name="cb-library-results", daemon=True)
        self._pump.start()

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("the generation backend is closed")
        s = job.sampling
        kwargs: dict[str, Any] = (
            {"temperature": 1.0, "top_k": 1, "top_p": 1.0}
            if s.greedy
            else {"temperature": float(s.temperature), "top_k": int(s.top_k or 0), "top_p": float(s.top_p)}
        )
        if not s.greedy and kwargs["top_k"] == 0:
            kwargs["top_k"] = vocab_size(self.model)  # 0 means "no cut"
        with self._lock:
            request_id = f"job-{self._counter}"
            self._counter += 1
            self._jobs[request_id] = job
        self.manager.add_request(
            list(job.prompt_ids),
            request_id=request_id,
            max_new_tokens=job.max_new_tokens,
            streaming=job.on_token is not None,
            eos_token_id=sorted(job.stop_ids) or -1,
            **kwargs,
        )

    def _deliver(self) -> None:
        while not self._closed:
            output = self.manager.get_result(timeout=0.1)
            if output is None:
                continue
            with self._lock:
                job = self._jobs.get(output.request_id)
            if job is None:
                continue
            fresh = output.generated_tokens[len(job.tokens) :]
            for token in fresh:
                if token in job.stop_ids:
                    break
                job.tokens.append(token)
                if job.on_token is not None:
                    job.on_token(token)
            if output.is_finished():
                with self._lock:
                    self._jobs.pop(output.request_id, None)
                stopped = any(t in job.stop_ids for t in output.generated_tokens)
                error = RuntimeError(output.error) if output.error else None
                if job.on_finish is not None:
                    job.on_finish(Completion(list(job.tokens), stopped, error))

    def forget(self, platform: str, user_id: str) -> int:
        return 0  # no per-conversation cache of ours on this backend

    def close(self) -> None:
        self._closed = True
        self.manager.stop(block=True, timeout=10)
        self._pump.join()
        with self._lock:
            left, self._jobs = list(self._jobs.values()), {}
        for job in left:
            if job.on_finish is not None:
                job.on_finish(Completion(list(job.tokens), False, RuntimeError("the backend was closed")))


CPU_KV_BUDGET = 16_384  # tokens; the dense cache's reservation on CPU
# Rows one CPU batch decodes at once: on 2 cores the default LM's tokens/s was flat from 16
# to 48 rows and fell beyond (0.83x at 64, 0.33x at 96): more rows only slow every step.
# `python -m benchmarks.batch_rows` measures it (docs/benchmarks.md).
CPU_MAX_ROWS = 48


def pick_backend(
    device: torch.device | str,
    model: Any,
    *,
    kv_budget: int | None = None,
    prefix_budget: int = 0,
) -> Backend:
    """The library's paged manager on CUDA, our dense-cache scheduler elsewhere (CPU).
    ``kv_budget`` None: :func:`kv_budget_for` the device."""
    device = torch.device(device)
    budget = kv_budget if kv_budget is not None else kv_budget_for(device, model)
    if device.type == "cuda":
        return LibraryBackend(model, kv_budget=budget)
    return DenseBackend(model, kv_budget=budget, prefix_budget=prefix_budget)


def kv_budget_for(device: torch.device, model: Any) -> int:
    """KV tokens for a backend on ``device``: a share of a GPU's free memory, else a fixed
    CPU reservation."""
    if device.type == "cuda":
        from core.device import device_kv_budget

        return device_kv_budget(model, device)
    return CPU_KV_BUDGET


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def _cuda_graphs(device: torch.device, requested: bool | None) -> tuple[bool, bool] | None:
    """(prefill, decode) CUDA-graph switches: the decoding step on CUDA (fixed shapes over
    the static paged cache, where launch overhead dominates), never prefill (varied
    lengths); nothing off CUDA. ``requested`` overrides the decode switch."""
    if device.type != "cuda":
        return None
    return (False, True if requested is None else requested)
