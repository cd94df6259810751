"""Float32 Linear layers through oneDNN with their weights packed once, for CPU serving.

PyTorch's CPU ``nn.Linear`` calls MKL's sgemm. On AMD processors MKL runs its AVX2 code
even where the CPU has AVX-512; oneDNN (``torch.ops.mkldnn``, in every x86 wheel) picks
its kernels by the CPU's features, and with the weight reordered once into its blocked
layout it skips the per-call repacking too. On the small products a decoding step makes
(31 rows x the default LM's layers, 2 threads) it measured 1.35-3.1x MKL's rate on an
AVX-512 EPYC, the output head most (``python -m benchmarks.decode_parts``,
docs/benchmarks.md).

Where a transformers MLP applies a GELU right after a packed layer (GPT-2's ``c_fc`` and
``gelu_new``, BERT's intermediate ``dense`` and exact GELU), the GELU moves into the
product as oneDNN's post-op and the activation module becomes ``nn.Identity``: one pass
over the output instead of one per elementwise op.

The arithmetic stays float32: results differ from MKL's in the last bits (about 1e-6),
as any two GEMMs with another summation order do. :func:`pack_linear_layers` checks each
packed layer (and each folded GELU) against the plain computation on a probe input and
keeps the plain one if they disagree, or if this build of torch has no oneDNN.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# (linear, activation) attributes of transformers' MLPs: GPT2MLP, BertIntermediate
_MLP_PAIRS = (("c_fc", "act"), ("dense", "intermediate_act_fn"))
_TOLERANCE = 1e-4  # a probe's largest relative difference from the plain layer; a wrong layout is far off


def available() -> bool:
    """This torch build can run packed oneDNN linear layers."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


class PackedLinear(nn.Module):
    """``F.linear(x, weight, bias)`` with the weight packed for oneDNN, followed by a GELU
    inside the product when ``gelu`` names its algorithm (set by :func:`pack_linear_layers`).

    ``weight`` and ``bias`` stay the layer's own tensors, in its own layout
    (``transposed``: GPT-2's ``Conv1D`` keeps (in, out)), so a tied output head still
    shares its embedding's tensor and ``state_dict`` is unchanged; the packed copy is a
    plain attribute, never saved."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, *, transposed: bool = False) -> None:
        super().__init__()
        self.weight, self.bias, self.transposed = weight, bias, transposed
        self.gelu: str | None = None  # oneDNN's GELU algorithm applied to the output: "tanh" or "none" (erf)
        with torch.no_grad():
            plain = weight.detach().t().contiguous() if transposed else weight.detach()  # (out, in)
            self.out_features, self.in_features = plain.shape
            self.packed = torch.ops.mkldnn._reorder_linear_weight(plain, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.detach()
        if self.gelu is None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "gelu", [], self.gelu)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        gelu = f", gelu={self.gelu}" if self.gelu else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}{gelu}"


def pack_linear_layers(model: nn.Module) -> int:
    """Replace, in place, every float32 CPU ``nn.Linear`` and transformers ``Conv1D`` of
    ``model`` with a :class:`PackedLinear`; returns how many were replaced (0 where this
    torch has no oneDNN, or the model is not float32 on CPU). For inference only: the
    packed copy does not follow later changes to the weights."""
    if not available():
        return 0
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:  # not its quantised or other subclasses
                transposed = False
            elif isinstance(child, Conv1D):  # GPT-2's Linear with a transposed (in, out) weight
                transposed = True
            else:
                continue
            if child.weight.device.type != "cpu" or child.weight.dtype != torch.float32:
                continue
            packed = PackedLinear(child.weight, child.bias, transposed=transposed)
            probe = _probe(packed.in_features)
            with torch.no_grad():
                agrees = _close(packed(probe), child(probe))
            if not agrees:
                log.warning("packed layer %s disagrees with the plain one; kept the plain layer", name)
                continue
            setattr(parent, name, packed)
            replaced += 1
    for module in model.modules():
        _fold_gelu(module)
    return replaced


def _fold_gelu(module: nn.Module) -> None:
    """Move an MLP's GELU into its packed first layer, when the result is the same."""
    for linear_name, act_name in _MLP_PAIRS:
        linear, act = getattr(module, linear_name, None), getattr(module, act_name, None)
        if not isinstance(linear, PackedLinear) or linear.gelu is not None or act is None:
            continue
        algorithm = _gelu_algorithm(act)
        if algorithm is None:
            continue
        probe = _probe(linear.in_features)
        with torch.no_grad():
            expected = act(linear(probe))
            linear.gelu = algorithm
            if not _close(linear(probe), expected):
                linear.gelu = None  # keep the separate activation
                continue
        setattr(module, act_name, nn.Identity())


def _gelu_algorithm(act: nn.Module) -> str | None:
    """oneDNN's GELU algorithm computing ``act``: "tanh" for GPT-2's ``gelu_new``, "none"
    (the erf form) for ``F.gelu``; None for anything else."""
    from transformers.activations import GELUActivation, NewGELUActivation

    if type(act) is NewGELUActivation:
        return "tanh"
    if type(act) is GELUActivation and getattr(act, "act", None) is F.gelu:
        return "none"
    return None


def _probe(features: int) -> torch.Tensor:
    """The same small random input for every check."""
    return torch.randn(3, features, generator=torch.Generator().manual_seed(0))


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal to float noise, relative to the output's size."""
    return bool((got - expected).abs().max() <= _TOLERANCE * max(1.0, float(expected.abs().max())))
