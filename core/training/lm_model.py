"""The dialogue LM before training: a byte-level BPE tokenizer and a GPT-2 preset from
scratch, or a ``--base`` causal LM with the prompt tokens added; then freezing and LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError
from core.prompt import EOS, PAD, ROLE_TOKENS, ensure_special_tokens
from core.training.config import PRESETS


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE on the training texts, wrapped as a GPT-2 tokenizer with the
    prompt tokens (saved with the model, loaded by AutoTokenizer)."""
    from tokenizers import ByteLevelBPETokenizer

    # transformers 5 keeps GPT2TokenizerFast as a lazy alias that mypy cannot see
    from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS, PAD, *ROLE_TOKENS],
        show_progress=False,
    )
    return GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=1024,
    )


def scratch_model(preset: str, tokenizer: Any, n_positions: int, dropout: float) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    n_layer, n_embd, n_head = PRESETS[preset]
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def load_base(base: str) -> tuple[Any, Any, list[int]]:
    """The ``--base`` model + tokenizer, with the prompt tokens added (embeddings resized),
    and the ids of the added tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(base).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(base, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"base model {base!r} cannot be loaded ({str(exc).splitlines()[0][:160]}); "
            "give a local folder or a name the network can reach"
        ) from exc
    before = len(tokenizer)
    if ensure_special_tokens(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, list(range(before, len(tokenizer)))


def _blocks(model: Any) -> torch.nn.ModuleList:
    """The stack of transformer blocks (``transformer.h`` for GPT-2, ``model.layers`` ...)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError("cannot find the transformer blocks of this model to freeze")


def freeze(model: Any, *, embeddings: bool, layers: int) -> None:
    """Fix the token/position embeddings and/or the lowest ``layers`` blocks."""
    if embeddings:
        for p in model.get_input_embeddings().parameters():
            p.requires_grad_(False)
        for name, p in model.named_parameters():
            if name.endswith(("wpe.weight", "embed_positions.weight")):
                p.requires_grad_(False)
    if layers:
        blocks = _blocks(model)
        if layers > len(blocks):
            raise ConfigError(f"--freeze-layers {layers}: the model has only {len(blocks)} layers")
        for block in blocks[:layers]:
            for p in block.parameters():
                p.requires_grad_(False)


def with_lora(model: Any, r: int, alpha: int, dropout: float, targets: str, new_token_ids: list[int]) -> Any:
    """LoRA adapters (peft) on the attention projections; the added prompt-token rows stay trainable."""
    from peft import LoraConfig, get_peft_model

    names = [t.strip() for t in targets.split(",") if t.strip()] or None
    if names is None and model.config.model_type == "gpt2":
        names = ["c_attn", "c_proj"]
    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=names,
        task_type="CAUSAL_LM",
        fan_in_fan_out=model.config.model_type == "gpt2",
        trainable_token_indices=new_token_ids or None,
    )
    return get_peft_model(model, lora)


def count_params(model: Any) -> dict[str, int]:
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def preset_params(preset: str, vocab_size: int = 8000, n_positions: int = 256) -> int:
    """Parameter count of a from-scratch preset (tied input/output embeddings)."""
    n_layer, d, _ = PRESETS[preset]
    block = 12 * d * d + 13 * d  # attention (4 d^2) + MLP (8 d^2) + biases + 2 LayerNorms
    return vocab_size * d + n_positions * d + n_layer * block + 2 * d
