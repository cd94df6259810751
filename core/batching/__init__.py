"""Continuous batching for the dialogue LM: requests join and leave a running batch at
every decoding step, each with its own sampling settings, within a KV-cache budget, and
each reply is also a token stream.

    service.ContinuousGenerator   requests in, ReplyStream per request out (a ReplyModel)
    backends.pick_backend         DenseBackend on CPU, LibraryBackend on CUDA
    scheduler.ContinuousScheduler our scheduler over a dense KV cache, one slot per row
    kv_cache.SlotKVCache          that cache
    sampling.choose_tokens        per-row greedy / temperature / top-k / top-p / penalty
    stream.ReplyStream            one reply as it is written
"""

from core.batching.backends import Backend, DenseBackend, LibraryBackend, pick_backend
from core.batching.sampling import Sampling
from core.batching.scheduler import Completion, ContinuousScheduler, Job
from core.batching.service import ContinuousGenerator
from core.batching.stream import ReplyStream

__all__ = [
    "Backend",
    "Completion",
    "ContinuousGenerator",
    "ContinuousScheduler",
    "DenseBackend",
    "Job",
    "LibraryBackend",
    "ReplyStream",
    "Sampling",
    "pick_backend",
]
