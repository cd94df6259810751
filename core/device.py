"""Where models run and how much of the machine they take.

- device and weights: CUDA (bf16, else fp16) when present, otherwise CPU in fp32;
- KV-cache budget on a GPU: the tokens that fit in a share of the device's free memory;
- CPU threads: torch's pools sized to the cores this process may really use (affinity,
  cgroup quota), for the one thread that runs every model on CPU (``core.lane``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError

log = logging.getLogger(__name__)

THREADS_ENV = "CHATBOT_TORCH_THREADS"  # "N" or "N,M": intra-op N, inter-op M (bots/config.py)
KV_MEMORY_SHARE = 0.8  # of the free device memory (after the weights) given to the KV cache


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` ("cpu", "cuda", "cuda:1") wins; else CUDA when available."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """Half precision on GPUs (bf16 where supported), full precision on CPU."""
    if device.type == "cuda":
        return half_dtype(torch.cuda.is_bf16_supported())
    return torch.float32


def half_dtype(bf16_supported: bool) -> torch.dtype:
    """bf16 keeps fp32's range (no overflow in attention scores); fp16 where the GPU lacks it."""
    return torch.bfloat16 if bf16_supported else torch.float16


# -- KV-cache budget -----------------------------------------------------------------------


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Bytes one token's keys and values take over all layers of a decoder ``config``."""
    layers = _first(config, "num_hidden_layers", "n_layer")
    heads = _first(config, "num_attention_heads", "n_head")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or _first(config, "hidden_size", "n_embd") // heads
    return 2 * layers * kv_heads * head_dim * dtype.itemsize


def kv_budget_for_memory(free_bytes: int, bytes_per_token: int, share: float = KV_MEMORY_SHARE) -> int:
    """KV-cache tokens that fit in ``share`` of ``free_bytes`` (the rest is left to
    activations, logits and the allocator)."""
    if not 0 < share <= 1 or bytes_per_token < 1:
        raise ConfigError("the KV memory share must be in (0, 1] and a token must take >= 1 byte")
    return int(free_bytes * share) // bytes_per_token


def device_kv_budget(model: Any, device: torch.device, share: float = KV_MEMORY_SHARE) -> int:
    """The KV budget from the CUDA device's free memory now (call it after loading the weights)."""
    free, _total = torch.cuda.mem_get_info(device)
    dtype = next(model.parameters()).dtype
    return kv_budget_for_memory(free, kv_bytes_per_token(model.config, dtype), share)


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise ConfigError(f"model config has none of {', '.join(names)}")


# -- CPU threads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    intra_op: int  # threads one matrix multiply may use
    inter_op: int  # threads for independent ops run in parallel (none of ours are)
    cores: int  # cores this process may use
    source: str  # where the figures came from


def available_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota
    (a container limited to 2 CPUs on a 64-core host sees 64 in its affinity)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(cores, quota)) if quota else max(1, cores)


def _cgroup_quota(root: Path) -> int | None:
    """CPUs allowed by cgroup v2 ``cpu.max`` ("quota period"), rounded up; None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def thread_plan(cores: int, *, override: str | None = None) -> ThreadPlan:
    """Torch threads for a serving process on ``cores`` usable cores.

    Intra-op: every usable core. On CPU all model work runs on one thread (the model
    lane, ``core.lane``), so one team of torch threads computes at a time and none waits
    on another's; ``benchmarks/threads.py`` measures it against the two models computing
    on two threads (docs/benchmarks.md).

    What this adds over torch's default (all the machine's physical cores) is the cap by
    affinity and cgroup quota: a container limited to 2 CPUs on a 64-core host gets 2
    threads, not 32. Inter-op: 1, since nothing here runs independent ops in parallel.
    ``override`` ("N" or "N,M", from ``CHATBOT_TORCH_THREADS``) wins.
    """
    if override:
        try:
            parts = [int(p) for p in override.split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2) or min(parts) < 1:
            raise ConfigError(f"{THREADS_ENV}={override!r}: expected N or N,M with N, M >= 1")
        return ThreadPlan(parts[0], parts[1] if len(parts) == 2 else 1, cores, THREADS_ENV)
    return ThreadPlan(max(1, cores), 1, cores, f"{cores} usable cores")


def configure_threads(override: str | None = None) -> ThreadPlan:
    """Apply :func:`thread_plan` to torch, once per process, before any model runs.
    ``override``: ``CHATBOT_TORCH_THREADS`` (or ``OMP_NUM_THREADS``), read by the caller."""
    plan = thread_plan(available_cores(), override=override)
    torch.set_num_threads(plan.intra_op)
    try:
        torch.set_num_interop_threads(plan.inter_op)
    except RuntimeError:  # already set, or inter-op work already ran: only settable once
        log.debug("inter-op threads already fixed at %d", torch.get_num_interop_threads())
    log.info("torch threads: %d intra-op, %d inter-op (%s)", plan.intra_op, plan.inter_op, plan.source)
    return plan
