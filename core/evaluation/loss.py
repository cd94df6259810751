"""Reply-token loss and perplexity: the one definition training reports and
``chatbot eval lm`` measures (labels -100 on the prompt, so only the reply counts)."""

from __future__ import annotations

import math
from typing import Any

import torch

from core.prompt import IGNORE_INDEX
from core.training.dialogues import collate


def summed_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of next-token cross-entropy over reply tokens, number of reply tokens)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    targets = batch["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at t
    keep = targets != IGNORE_INDEX
    loss = torch.nn.functional.cross_entropy(logits[:, :-1][keep].float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


@torch.inference_mode()
def reply_loss(
    model: Any,
    encoded: list[tuple[list[int], list[int]]],
    pad_id: int,
    device: torch.device,
    batch_size: int = 32,
) -> float:
    """Mean cross-entropy per reply token over every example (exp of it is the perplexity)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    for s in range(0, len(order), batch_size):
        batch = collate([encoded[i] for i in order[s : s + batch_size]], pad_id)
        loss, n = summed_loss(model, {k: v.to(device) for k, v in batch.items()})
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def perplexity(loss: float) -> float:
    """exp(loss), capped so a diverged model reads as a huge number, not an overflow."""
    return math.exp(min(loss, 50.0))
