"""One decoding step of a GPT-2, written out: the default LM's hot loop without the
framework around it.

transformers' ``GPT2LMHeadModel.forward`` wraps the same arithmetic in output capture,
config merging, mask building and cache dispatch; on CPU that wrapping is a quarter of a
batch-1 decoding step and a tenth of a 32-row one (one-off timings). This calls
the model's own modules (embeddings, layer norms, ``c_attn``/``c_proj``, MLP, head) in
the order ``GPT2Block`` does, with :func:`core.batching.attention.decode_attention`, so
the tokens are those of the generic path. Models it does not fit (other architectures,
GPT-2s with reordered attention or cross-attention) take the generic path (:func:`fits`).
"""

from __future__ import annotations

from typing import Any

import torch

from core.batching.attention import decode_attention
from core.batching.kv_cache import SlotKVCache


def fits(model: Any) -> bool:
    """A plain GPT-2 LM head model: the step below is exactly its forward pass."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "GPT2LMHeadModel"
        and config is not None
        and not config.reorder_and_upcast_attn
        and not config.add_cross_attention
    )


def decode_step(
    model: Any, fed: torch.Tensor, positions: torch.Tensor, cache: SlotKVCache, mask: torch.Tensor
) -> torch.Tensor:
    """Logits (B, V) of the next token after ``fed`` (B, 1) at ``positions`` (B, 1);
    each layer's keys/values go into ``cache``, ``mask`` (B, 1, 1, W) is additive."""
    gpt = model.transformer
    x = gpt.wte(fed) + gpt.wpe(positions)  # (B, 1, C)
    batch = fed.size(0)
    for block, layer in zip(gpt.h, cache.layers(), strict=True):
        attn = block.attn
        q, k, v = attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=2)  # (B, 1, C) each
        q, k, v = (t.view(batch, 1, attn.num_heads, attn.head_dim).transpose(1, 2) for t in (q, k, v))
        keys, values = layer.update(k, v)  # (B, H, W, D): this step's column written in place
        y, _ = decode_attention(attn, q, keys, values, mask, scaling=attn.scaling)
        x = x + attn.c_proj(y.reshape(batch, 1, -1))
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(gpt.ln_f(x))[:, -1, :]
