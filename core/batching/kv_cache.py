"""The running batch's key/value cache: one ``(slots, H, capacity, D)`` buffer pair per layer.

Row b of the batch lives in slot b with its tokens left-aligned in columns
``[0, length_b)``. A decoding step writes one column per row, each at its own length,
and the attention mask (built here as 4-D, so transformers does not build its own)
hides every column past a row's end. So nothing moves while rows run:

- a joining row copies its prompt's keys/values into the next slot;
- a leaving row is overwritten by the batch's last row (one row copied), so the running
  rows always fill slots ``[0, B)`` and the model reads a view, never a gathered copy;
- the buffers are reallocated only when the batch outgrows its slots or a row outgrows
  the capacity, and then to exactly what the running rows need.

The cache also keeps each row's token ids in the same layout (``history``), which is
what the repetition penalty reads.

``slots x capacity`` is the memory held, and what the scheduler's budget caps. The
layout before this one (right-aligned rows sharing one write column) copied the whole
cache at every join and every leave: a fifth of the engine's time under load.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from core.batching.attention import NAME as DECODE_ATTENTION
from core.errors import ConfigError

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, H, T, D) each


class SlotLayer(DynamicLayer):
    """One layer of a :class:`SlotKVCache`: decoding steps write a column per row in place."""

    def __init__(self, owner: SlotKVCache, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.lazy_initialization(keys[:0, :, :0], values[:0, :, :0])
        self.owner = owner
        self.buffers = (keys, values)  # (S, H, C, D) each
        self.show(0, 0)

    def show(self, rows: int, width: int) -> LayerKV:
        """What the model sees: the first ``rows`` slots, ``width`` columns (views)."""
        keys, values = self.buffers[0][:rows, :, :width], self.buffers[1][:rows, :, :width]
        self.keys, self.values = keys, values
        return keys, values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> LayerKV:
        if key_states.size(-2) != 1:
            raise ValueError("a slot cache layer takes one decoding step at a time")
        assert self.owner.writes is not None, "SlotKVCache.step() prepares each decoding step"
        rows, columns, width = self.owner.writes  # (B,), (B,), W + 1
        keys, values = self.buffers
        keys[rows, :, columns] = key_states[:, :, 0]  # (B, H, D) at each row's own column
        values[rows, :, columns] = value_states[:, :, 0]
        return self.show(len(rows), width)


class SlotKVCache:
    """Keys/values of the running rows, their lengths, and the mask of each decoding step."""

    def __init__(self, attention: str = "sdpa") -> None:
        self.cache: DynamicCache | None = None  # what the model reads and appends to
        self.lengths: list[int] = []  # tokens per row (prompt + replies fed back)
        self.attention = attention  # the model's attention implementation: the mask's form
        self.writes: tuple[torch.Tensor, torch.Tensor, int] | None = None  # set per step
        self.tokens = torch.zeros((0, 0), dtype=torch.long)  # (S, C) ids; past a row's end: its first

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def width(self) -> int:
        return max(self.lengths, default=0)

    @property
    def slots(self) -> int:
        return self.layers()[0].buffers[0].size(0) if self.cache is not None else 0

    @property
    def capacity(self) -> int:
        return self.layers()[0].buffers[0].size(2) if self.cache is not None else 0

    @property
    def tokens_held(self) -> int:
        """Token slots reserved per layer (room to grow included)."""
        return self.slots * self.capacity

    def layers(self) -> list[SlotLayer]:
        assert self.cache is not None
        return self.cache.layers  # type: ignore[return-value]

    def add_rows(self, kv: list[LayerKV], picked: list[int], prompts: list[list[int]], capacity: int) -> None:
        """Append prefilled sequences: rows ``picked`` of ``kv``, which holds them
        right-aligned, (n, H, T, D) per layer with ``picked[i]``'s ``len(prompts[i])``
        tokens in its last columns, padding before; copied straight into their slots.
        ``capacity``: the longest any running row can get (prompt + max new tokens)."""
        lengths = [len(p) for p in prompts]
        first, rows = self.rows, self.rows + len(lengths)
        if self.cache is None or rows > self.slots or capacity > self.capacity:
            self._reallocate(kv, rows, capacity)
        for i, prompt in enumerate(prompts):
            self.tokens[first + i] = prompt[0]
            self.tokens[first + i, : len(prompt)] = torch.tensor(prompt)
        width = kv[0][0].size(-2)
        for layer, (k, v) in zip(self.layers(), kv, strict=True):
            keys, values = layer.buffers
            for i, (row, n) in enumerate(zip(picked, lengths, strict=True)):
                keys[first + i, :, :n] = k[row, :, width - n :]
                values[first + i, :, :n] = v[row, :, width - n :]
        self.lengths.extend(lengths)
        self._show()

    def drop_rows(self, rows: list[int]) -> list[tuple[int, int]]:
        """Remove finished rows; each is overwritten by the current last row. Returns the
        ``(from, to)`` moves made, for the caller to mirror in its own per-row state."""
        moves = []
        for row in sorted(rows, reverse=True):  # rows after ``row`` are all kept by now
            last = self.rows - 1
            if row != last:
                self.tokens[row] = self.tokens[last]
                for layer in self.layers():
                    for buffer in layer.buffers:
                        buffer[row, :, : self.lengths[last]] = buffer[last, :, : self.lengths[last]]
                self.lengths[row] = self.lengths[last]
                moves.append((last, row))
            self.lengths.pop()
        if not self.lengths:
            self.cache = None
        else:
            self._show()
        return moves

    def release_idle(self, capacity: int) -> None:
        """Give back the slots finished rows left (and columns past ``capacity``): fresh
        buffers of exactly the running rows. For when the budget needs that memory."""
        if self.cache is None or (self.rows == self.slots and capacity >= self.capacity):
            return
        self._reallocate([layer.buffers for layer in self.layers()], self.rows, max(capacity, self.width))
        self._show()

    def row_kv(self, row: int) -> list[LayerKV]:
        """A copy of one row's keys/values, (1, H, length, D) per layer."""
        n = self.lengths[row]
        return [tuple(b[row : row + 1, :, :n].clone() for b in layer.buffers) for layer in self.layers()]  # type: ignore[misc]

    def history(self) -> torch.Tensor:
        """Each row's token ids so far, (B, W): a row shorter than W repeats its first."""
        return self.tokens[: self.rows, : self.width]

    def step(self, fed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepare one decoding step that feeds ``fed`` (B, 1): the rows' position ids
        (B, 1) and the attention mask; the layers then write each row's new column at
        its length."""
        device = self.layers()[0].buffers[0].device
        positions = torch.tensor(self.lengths, device=device)  # (B,) = the column each row writes
        width = self.width + 1
        rows = torch.arange(self.rows, device=device)
        self.writes = (rows, positions, width)
        self.tokens[rows, positions] = fed[:, 0].to(self.tokens.device)
        visible = torch.arange(width, device=device)[None, :] <= positions[:, None]  # (B, W + 1)
        self.lengths = [n + 1 for n in self.lengths]
        return positions[:, None], self._mask(visible)

    def _mask(self, visible: torch.Tensor) -> torch.Tensor:
        """The mask in the form the attention implementation reads: 4-D (transformers
        then uses it as is) for SDPA (bool), eager and ``core.batching.attention``
        (additive); 2-D for the rest."""
        if self.attention == "sdpa":
            return visible[:, None, None, :]  # (B, 1, 1, W + 1)
        if self.attention in ("eager", DECODE_ATTENTION):
            dtype = self.layers()[0].buffers[0].dtype
            additive = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
            return additive.masked_fill(~visible, torch.finfo(dtype).min)[:, None, None, :]
        return visible.long()

    def _reallocate(self, kv: list[LayerKV], rows: int, capacity: int) -> None:
        """Fresh buffers of exactly ``rows x capacity``; running rows are copied over."""
        old = self.layers() if self.cache is not None else None
        used = self.width
        tokens = torch.zeros((rows, capacity), dtype=torch.long, device=kv[0][0].device)
        if self.rows:
            tokens[: self.rows] = self.tokens[: self.rows, :1]  # padding: each row's first token
            tokens[: self.rows, :used] = self.tokens[: self.rows, :used]
        self.tokens = tokens
        layers: list[Any] = []
        for i, (k, _v) in enumerate(kv):
            _n, heads, _t, dim = k.shape
            # zeros, not empty: a masked column still meets its value (0 x NaN is NaN)
            buffers = [k.new_zeros((rows, heads, capacity, dim)) for _ in range(2)]
            if old is not None:
                for new, prev in zip(buffers, old[i].buffers, strict=True):
                    new[: self.rows, :, :used] = prev[: self.rows, :, :used]
            layers.append(SlotLayer(self, buffers[0], buffers[1]))
        self.cache = DynamicCache()
        self.cache.layers = layers

    def _show(self) -> None:
        for layer in self.layers():
            layer.show(self.rows, self.width)


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
