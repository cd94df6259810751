"""Attention for decoding steps on CPU: one query per row, two matrix products.

For a single query token PyTorch's CPU SDPA kernel (flash attention, blocked for long
queries) took about twice as long as ``softmax(q @ k^T + mask) @ v`` written out, on a
32-row batch with 200 cached columns in a one-off timing on the 2-core CPU. Every other
call (prefill, several queries, grouped-query heads, dropout) goes to transformers' SDPA
function unchanged. :func:`use_decode_attention` switches a model over; its results
differ from SDPA's only by float rounding (~1e-7).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "decode_matmul"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, Q, D)
    key: torch.Tensor,  # (B, H, W, D)
    value: torch.Tensor,  # (B, H, W, D)
    attention_mask: torch.Tensor | None,  # (B, 1, Q, W): bool (True = attend) or additive
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    single = query.size(-2) == 1 and key.size(1) == query.size(1) and not kwargs.get("position_bias")
    if not single or dropout or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale  # (B, H, 1, W)
    if attention_mask is not None:
        mask = attention_mask[..., : key.size(-2)]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(weights, value)  # (B, H, 1, D)
    return out.transpose(1, 2).contiguous(), None  # (B, 1, H, D), as SDPA's function returns


AttentionInterface.register(NAME, decode_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)  # masks it builds itself: SDPA's (bool)


def use_decode_attention(model: Any) -> str:
    """Switch a CPU model that uses SDPA to :func:`decode_attention`; returns the
    attention implementation the model uses now (unchanged elsewhere)."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None) or "eager"
    device = next(model.parameters()).device
    if current != "sdpa" or device.type != "cpu" or not hasattr(model, "set_attn_implementation"):
        return current
    model.set_attn_implementation(NAME)
    return NAME
