"""Int8 dynamic quantisation of the dialogue LM for CPU serving.

Weights of every Linear layer are stored as int8 (per output channel) and activations
are quantised on the fly, which shrinks the matrix multiplies that dominate decoding on
a CPU. GPT-2 writes its projections as ``Conv1D`` (a Linear with a transposed weight),
which PyTorch's quantiser does not know, so those become ``nn.Linear`` first.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError
from core.generator import Generator


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers ``Conv1D`` with the equivalent ``nn.Linear``, in place;
    returns how many were replaced."""
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape  # Conv1D weight is (in, out); Linear's is (out, in)
                linear = nn.Linear(n_in, n_out, dtype=child.weight.dtype, device=child.weight.device)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def quantize_model(model: Any) -> Any:
    """The model with int8 dynamic Linear layers (CPU, float32 models only)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("int8 dynamic quantisation runs on CPU only; load the model with device cpu")
    conv1d_to_linear(model)
    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao; it still works
        # and needs no extra dependency, so its deprecation warnings are silenced here.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model.eval(), {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def quantize_int8(generator: Generator) -> Generator:
    """A generator over the same model, quantised in place (the original is not usable after)."""
    model = quantize_model(generator.model)
    quantized = Generator(model, generator.tokenizer, generator.device, generator.path)
    quantized.mask_references = generator.mask_references
    return quantized
