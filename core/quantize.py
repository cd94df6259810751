"""Int8 dynamic quantisation of the dialogue LM and the intent classifier for CPU serving.

Weights of every Linear layer are stored as int8 (per output channel) and activations
are quantised on the fly, which shrinks the matrix multiplies that dominate decoding on
a CPU. GPT-2 writes its projections as ``Conv1D`` (a Linear with a transposed weight),
which PyTorch's quantiser does not know, so those become ``nn.Linear`` first.

A quantised model is a model folder of its own (``chatbot models quantize NAME`` writes
``NAME-int8``): the source's files (hard-linked) plus ``quantization.json``; the loaders
(``Generator.from_pretrained``, ``IntentClassifier.from_pretrained``) quantise it as they
load it, in a second or two. A persona names it like any model (``models.lm:
lm-default-int8``). On a GPU the marker is ignored: half precision is the fast path there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.generator import Generator

log = logging.getLogger(__name__)

MARKER = "quantization.json"
METHOD = "int8-dynamic"
# Written anew for the quantised folder (its own figures), or not part of a model.
_NOT_COPIED = {"metrics.json", "model-card.md", MARKER}


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
    from core.generator import Generator

    model = quantize_model(generator.model)
    quantized = Generator(model, generator.tokenizer, generator.device, generator.path)
    quantized.mask_references = generator.mask_references
    return quantized


def write_quantized_folder(source: Path, target: Path) -> Path:
    """``target``: the model files of ``source`` (hard links where the filesystem allows)
    and the marker that makes the loaders quantise it. Refuses an existing ``target``."""
    if not (source / "config.json").is_file():
        raise ConfigError(f"no model at {source} (config.json missing)")
    if (source / MARKER).is_file():
        raise ConfigError(f"{source} is already quantised")
    if target.exists():
        raise ConfigError(f"{target} already exists; remove it or choose another --output")
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in _NOT_COPIED:
            try:
                os.link(path, target / path.name)
            except OSError:  # another filesystem, or links not allowed
                shutil.copy2(path, target / path.name)
    marker = {"method": METHOD, "layers": "every nn.Linear (GPT-2 Conv1D converted)", "source": source.name}
    (target / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return target


def is_quantized(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def apply_saved_quantization(model: Any, folder: Path, device: torch.device) -> Any:
    """``model`` quantised when ``folder`` is marked so and it runs on CPU; else as it is."""
    if not is_quantized(folder):
        return model
    if device.type != "cpu":
        log.warning("%s is int8 for CPU; on %s it runs unquantised in half precision", folder, device)
        return model
    return quantize_model(model)
