"""Next-token choice for a batch whose rows each carry their own sampling settings.

The steps and their order are those of transformers' ``generate`` (repetition penalty,
then temperature, top-k, top-p), so a greedy row picks exactly the token ``generate``
would, and two personas with different settings share one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.persona import GenerationSettings


@dataclass(frozen=True, slots=True)
class Sampling:
    """One request's decoding settings; greedy when ``do_sample`` is off or temperature is 0."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k cut
    repetition_penalty: float = 1.0
    seed: int | None = None  # a seeded request samples the same tokens in any batch

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature <= 0.0

    @classmethod
    def from_settings(cls, settings: GenerationSettings, seed: int | None = None) -> Sampling:
        return cls(
            do_sample=settings.do_sample,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            repetition_penalty=settings.repetition_penalty,
            seed=seed,
        )


def penalise_repeats(logits: torch.Tensor, history: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """``RepetitionPenaltyLogitsProcessor`` per row: tokens already in the row's prompt or
    reply get their logit divided (positive) or multiplied (negative) by its penalty.

    logits (B, V) float; history (B, L) long, the row's tokens so far (a row shorter than
    L repeats one of its own tokens: scattering a token twice writes the same value);
    penalty (B,) float. Gathers and scatters the L seen columns only, as transformers does.
    """
    p = penalty[:, None]  # (B, 1)
    seen = logits.gather(1, history)  # (B, L)
    return logits.scatter(1, history, torch.where(seen < 0, seen * p, seen / p))


def _best_k(logits: torch.Tensor, top_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` best logits as (S, K) scores (-inf past the row's own k) and their
    vocabulary columns, K being the largest k. top_k (S,) long, all > 0."""
    vocab = logits.size(-1)
    k = top_k.clamp(max=vocab)
    scores, columns = torch.topk(logits, int(k.max()), dim=-1)  # (S, K) best first
    past = torch.arange(scores.size(-1), device=logits.device)[None, :] >= k[:, None]  # (S, K)
    return scores.masked_fill(past, float("-inf")), columns


def _top_p(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus cut per row, as ``TopPLogitsWarper``: drop the least likely tokens whose
    probabilities sum to at most ``1 - top_p``, always keeping the best one."""
    ordered, index = torch.sort(logits, descending=False)  # (B, V) ascending
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    drop_sorted = cumulative <= (1 - top_p)[:, None]  # (B, V)
    drop_sorted[:, -1] = False
    drop = drop_sorted.scatter(1, index, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose_tokens(
    logits: torch.Tensor,
    settings: Sequence[Sampling],
    history: torch.Tensor,
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """The next token of every row. logits (B, V); history (B, L) long, each row's tokens
    so far (see :func:`penalise_repeats`)."""
    logits = logits.float()
    device = logits.device
    penalty = torch.tensor([s.repetition_penalty for s in settings], device=device)  # (B,)
    if bool((penalty != 1.0).any()):
        logits = penalise_repeats(logits, history, penalty)
    greedy = [i for i, s in enumerate(settings) if s.greedy]
    if len(greedy) == len(settings):
        return [int(t) for t in logits.argmax(dim=-1).tolist()]
    chosen = torch.zeros(len(settings), dtype=torch.long, device=device)  # (B,)
    if greedy:  # an argmax over the whole vocabulary only for the rows that need it
        rows = torch.tensor(greedy, device=device)
        chosen[rows] = logits[rows].argmax(dim=-1)
    sampled = [i for i, s in enumerate(settings) if not s.greedy]
    picked = [settings[i] for i in sampled]
    temperature = torch.tensor([s.temperature for s in picked], device=device)[:, None]
    scores = logits if len(sampled) == len(settings) else logits[torch.tensor(sampled, device=device)]
    scores = scores / temperature  # (S, V)
    # A row with a top-k cut needs only its k best columns for top-p and the draw (the rest
    # are -inf after top-k: they add nothing to top-p's sums); the others keep every
    # column. Decided per row, so a seeded row draws the same in any batch.
    cut = [j for j, s in enumerate(picked) if s.top_k > 0]
    whole = [j for j, s in enumerate(picked) if s.top_k <= 0]
    for group in (cut, whole):
        if not group:
            continue
        part = scores if len(group) == len(picked) else scores[torch.tensor(group, device=device)]  # (G, V)
        columns = None
        if group is cut:
            part, columns = _best_k(part, torch.tensor([picked[j].top_k for j in group], device=device))
        top_p = torch.tensor([picked[j].top_p for j in group], device=device)
        if bool((top_p < 1.0).any()):
            part = _top_p(part, top_p)
        probs = part.softmax(dim=-1)  # (G, V) or (G, K)
        draws = _draw(probs, [generators[sampled[j]] for j in group])  # (G,)
        if columns is not None:
            draws = columns.gather(1, draws[:, None])[:, 0]
        chosen[torch.tensor([sampled[j] for j in group], device=device)] = draws
    return [int(t) for t in chosen.tolist()]


def _draw(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One draw per row of ``probs`` (G, N): rows without a generator in one call, a
    seeded row alone with its own generator, so it draws the same beside any neighbours."""
    free = [g for g, gen in enumerate(generators) if gen is None]
    if len(free) == len(generators):
        return torch.multinomial(probs, 1)[:, 0]
    draws = torch.zeros(len(generators), dtype=torch.long, device=probs.device)
    if free:
        rows = torch.tensor(free, device=probs.device)
        draws[rows] = torch.multinomial(probs[rows], 1)[:, 0]
    for g, gen in enumerate(generators):
        if gen is not None:
            draws[g] = torch.multinomial(probs[g], 1, generator=gen)[0]
    return draws
