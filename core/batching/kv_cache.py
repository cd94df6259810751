"""The running batch's key/value cache: one dense, left-padded tensor pair per layer.

Every decoding step appends one column for all rows, so a row's tokens always fill the
last ``length`` columns and the columns before them are padding, masked out by
``attention``. A joining row is spliced in right-aligned (everyone is padded on the
left when its prompt is longer than the cache), a leaving row is dropped, and columns
that became padding in every row are trimmed, so the width is always the longest row.

Each layer reserves ``capacity`` columns up front (the longest any running row can get),
so a decoding step writes its column in place; transformers' ``DynamicLayer`` copies the
whole cache with ``torch.cat`` at every step instead. ``rows x capacity`` is the memory
held, and what the scheduler's budget caps.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from core.errors import ConfigError

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, H, T, D) each


class ReservedLayer(DynamicLayer):
    """A full-attention cache layer whose keys/values are views into a reserved buffer."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self.reserve(keys, values, capacity)

    def reserve(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        """Hold ``keys``/``values`` (B, H, T, D) in a buffer of ``capacity >= T`` columns."""
        batch, heads, length, dim = keys.shape
        capacity = max(capacity, length)
        self._keys = keys.new_empty((batch, heads, capacity, dim))  # (B, H, C, D)
        self._values = values.new_empty((batch, heads, capacity, dim))
        self._keys[:, :, :length] = keys
        self._values[:, :, :length] = values
        self._length = length
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    @property
    def capacity(self) -> int:
        return self._keys.size(-2)

    def held(self) -> LayerKV:
        """The keys/values in use, (B, H, T, D) views."""
        return self._keys[:, :, : self._length], self._values[:, :, : self._length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> LayerKV:
        new = key_states.size(-2)
        end = self._length + new
        if end > self.capacity:  # not expected (the scheduler reserves enough); grow rather than fail
            self.reserve(self._keys[:, :, : self._length], self._values[:, :, : self._length], 2 * end)
        self._keys[:, :, self._length : end] = key_states
        self._values[:, :, self._length : end] = value_states
        self._length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values


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
    def capacity(self) -> int:
        return self._layers()[0].capacity if self.cache is not None else 0

    @property
    def tokens_held(self) -> int:
        """Token slots reserved per layer (padding and room to grow included)."""
        return self.rows * self.capacity

    def layers(self) -> list[LayerKV]:
        return [layer.held() for layer in self._layers()]

    def _layers(self) -> list[ReservedLayer]:
        assert self.cache is not None
        return cast(list[ReservedLayer], self.cache.layers)

    def add_rows(self, kv: list[LayerKV], lengths: list[int], capacity: int) -> None:
        """Append prefilled sequences: ``kv`` holds them right-aligned, (n, H, T, D) per
        layer with row i's ``lengths[i]`` tokens in its last columns, padding before.
        ``capacity``: the longest any running row can get (prompt + max new tokens)."""
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
                (_cat_rows(pad_left(keys, width), pad_left(k, width)),
                 _cat_rows(pad_left(values, width), pad_left(v, width)))
                for (keys, values), (k, v) in zip(self.layers(), kv, strict=True)
            ]  # fmt: skip
            self.attention = torch.cat([pad_left(self.attention, width), pad_left(new_mask, width)])
        self.cache = DynamicCache()
        self.cache.layers = [ReservedLayer(k, v, capacity) for k, v in merged]
        self.lengths.extend(lengths)

    def keep_rows(self, keep: list[int], capacity: int) -> None:
        """Drop every row not in ``keep`` (finished sequences), trim dead columns and
        shrink the reservation to ``capacity``."""
        if len(keep) == self.rows:
            return
        self.lengths = [self.lengths[i] for i in keep]
        if not keep:
            self.cache, self.attention = None, self.attention[:0, :0]
            return
        index = torch.tensor(keep, device=self.attention.device)
        width = max(self.lengths)
        start = self.width - width  # columns before this are padding in every kept row
        for layer, (keys, values) in zip(self._layers(), self.layers(), strict=True):
            layer.reserve(keys[index, :, start:], values[index, :, start:], capacity)
        self.attention = self.attention[index, start:]

    def grow(self) -> torch.Tensor:
        """The mask for the next decoding step (one more real column per row), (B, W + 1)."""
        ones = torch.ones((self.rows, 1), dtype=torch.long, device=self.attention.device)
        self.attention = torch.cat([self.attention, ones], dim=1)
        self.lengths = [n + 1 for n in self.lengths]
        return self.attention


def layer_kv(cache: DynamicCache) -> list[LayerKV]:
    """Keys/values of a prefill cache, which must hold plain full-attention layers: a
    sliding-window or linear-attention layer does not keep every column to splice."""
    out = []
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise ConfigError(
                f"the dense scheduler needs full-attention cache layers, not {type(layer).__name__}; "
                "use the library backend for this model"
            )
        assert layer.keys is not None and layer.values is not None
        out.append((layer.keys, layer.values))
    return out


def pad_left(x: torch.Tensor, width: int) -> torch.Tensor:
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
