"""The running batch's key/value cache: one dense, left-padded tensor pair per layer.

Every decoding step appends one column for all rows, so a row's tokens always fill the
last ``length`` columns of the cache and the columns before them are padding, masked
out by ``attention``. A joining row is spliced in right-aligned (everyone is padded on
the left when its prompt is longer than the cache), a leaving row is dropped, and
columns that became padding in every row are trimmed, so the width is always the
longest row: ``rows x width`` is the memory held.
"""

from __future__ import annotations

from typing import cast

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from core.errors import ConfigError

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, H, T, D) each


class DenseKVCache:
    """Keys/values of the running rows plus the attention mask and lengths that go with them."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None  # what the model reads and appends to
        self.attention = torch.zeros((0, 0), dtype=torch.long)  # (B, W) 1 = real token
        self.lengths: list[int] = []  # real tokens per row

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def width(self) -> int:
        return self.attention.size(1)

    @property
    def tokens_held(self) -> int:
        """Token slots allocated per layer (padding included): what the budget caps."""
        return self.rows * self.width

    def layers(self) -> list[LayerKV]:
        assert self.cache is not None
        return layer_kv(self.cache)

    def add_rows(self, kv: list[LayerKV], lengths: list[int]) -> None:
        """Append prefilled sequences: ``kv`` holds them right-aligned, (n, H, T, D) per
        layer with row i's ``lengths[i]`` tokens in its last columns, padding before."""
        width_new = kv[0][0].size(-2)
        new_mask = torch.zeros((len(lengths), width_new), dtype=torch.long, device=kv[0][0].device)
        for row, length in enumerate(lengths):
            new_mask[row, width_new - length :] = 1
        start = width_new - max(lengths)  # columns that are padding in every new row
        kv = [(k[:, :, start:], v[:, :, start:]) for k, v in kv]
        new_mask = new_mask[:, start:]
        if self.cache is None or self.rows == 0:
            merged = kv
            self.attention = new_mask
        else:
            width = max(self.width, new_mask.size(1))
            merged = [
                (_cat_rows(_pad_left(keys, width), _pad_left(k, width)),
                 _cat_rows(_pad_left(values, width), _pad_left(v, width)))
                for (keys, values), (k, v) in zip(self.layers(), kv, strict=True)
            ]  # fmt: skip
            self.attention = torch.cat([_pad_left(self.attention, width), _pad_left(new_mask, width)])
        self.cache = DynamicCache(ddp_cache_data=merged)
        self.lengths.extend(lengths)

    def keep_rows(self, keep: list[int]) -> None:
        """Drop every row not in ``keep`` (finished sequences) and trim dead columns."""
        if len(keep) == self.rows:
            return
        self.lengths = [self.lengths[i] for i in keep]
        if not keep:
            self.cache, self.attention = None, self.attention[:0, :0]
            return
        assert self.cache is not None
        index = torch.tensor(keep, device=self.attention.device)
        width = max(self.lengths)
        start = self.width - width  # columns before this are padding in every kept row
        for layer, (keys, values) in zip(dense_layers(self.cache), self.layers(), strict=True):
            layer.keys = keys[index, :, start:, :]
            layer.values = values[index, :, start:, :]
        self.attention = self.attention[index, start:]

    def grow(self) -> torch.Tensor:
        """The mask for the next decoding step (one more real column per row), (B, W + 1)."""
        ones = torch.ones((self.rows, 1), dtype=torch.long, device=self.attention.device)
        self.attention = torch.cat([self.attention, ones], dim=1)
        self.lengths = [n + 1 for n in self.lengths]
        return self.attention


def dense_layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's layers, which must be plain full-attention ``DynamicLayer``s: a sliding
    window or linear-attention layer does not keep every column, so it cannot be spliced."""
    layers = list(cache.layers)
    for layer in layers:
        if type(layer) is not DynamicLayer:
            raise ConfigError(
                f"the dense scheduler needs full-attention cache layers, not {type(layer).__name__}; "
                "use the library backend for this model"
            )
    return cast(list[DynamicLayer], layers)


def layer_kv(cache: DynamicCache) -> list[LayerKV]:
    return [
        (layer.keys, layer.values)
        for layer in dense_layers(cache)
        if layer.keys is not None and layer.values is not None
    ]


def _pad_left(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero columns in front of the sequence axis (the second last of a cache, the last of a mask)."""
    axis = -2 if x.dim() == 4 else -1
    missing = width - x.size(axis)
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[axis] = missing
    return torch.cat([x.new_zeros(shape), x], dim=axis)


def _cat_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([a, b], dim=0)
