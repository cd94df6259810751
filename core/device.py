"""Where models run: CUDA (bf16, else fp16) when present, otherwise CPU in fp32."""

from __future__ import annotations

import torch


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` ("cpu", "cuda", "cuda:1") wins; else CUDA when available."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """Half precision on GPUs (bf16 where supported), full precision on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
