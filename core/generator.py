"""The dialogue LM behind :class:`core.protocols.ReplyModel`.

Any local causal-LM folder loads (GPT-2 by default, trained by ``chatbot train lm``).
Requests with the same sampling settings are generated as one left-padded batch; the
reply is what follows ``<|bot|>`` up to ``<|end|>``, cleaned for a chat window.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from core.device import pick_device, pick_dtype
from core.errors import ModelMissing
from core.metrics import GENERATED_TOKENS, GENERATION_BATCH, GENERATION_SECONDS
from core.persona import GenerationSettings
from core.prompt import (
    END,
    build_prompt_ids,
    ensure_special_tokens,
    mask_request,
    scope_history,
    special_ids,
)
from core.protocols import GenerationRequest
from core.quantize import apply_saved_quantization
from core.slots import unmask_references

log = logging.getLogger(__name__)

MIN_PROMPT_TOKENS = 16  # max_new_tokens is capped so a prompt keeps at least this room

_SPECIAL_LEFT = re.compile(r"<\|[a-z]+\|>")
_SPACES = re.compile(r"[ \t\u00a0]+")
_MANY_BREAKS = re.compile(r"\n{3,}")
_SENTENCE_END = re.compile(r"[.!?…](?:[\"')\]]*)(?=\s|$)")
_LIST_MARKER_LINE = re.compile(r"\n[ \t]*(?:\d+[.)]|[-*•])?[ \t]*$")
_DANGLING_SLOT = re.compile(r"\{\{[^{}]*\}?$|\{\s*$")  # "{{Cust", "{{Cust}", a lone "{"
_SLOT = re.compile(r"(\{\{[^{}\n]*\}\})")


def clean_reply(text: str, *, hit_limit: bool) -> str:
    """A chat-ready reply from decoded new tokens.

    Removes leftover special tokens, collapses runs of spaces (line breaks of
    paragraphs and lists stay), drops an unfinished ``{{slot`` at the end (and the
    braces of any other unmatched ``{{``/``}}``) and, when
    generation stopped at ``max_new_tokens`` rather than at ``<|end|>``, cuts back to
    the last complete sentence (or line) so no half sentence is sent.
    """
    text = _SPECIAL_LEFT.sub("", text).replace("\r\n", "\n").rstrip()
    text = _DANGLING_SLOT.sub("", text)
    # stray braces inside the text ("the {{Termination option") lose their braces
    text = "".join(
        p if i % 2 else p.replace("{{", "").replace("}}", "") for i, p in enumerate(_SLOT.split(text))
    )
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = _MANY_BREAKS.sub("\n\n", "\n".join(lines)).strip()
    if hit_limit and text:
        text = _cut_to_sentence(text)
    return text


def _cut_to_sentence(text: str) -> str:
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    # "2." opening a list item is not a sentence end: skip ends that close a bare number.
    ends = [e for e in ends if not re.search(r"(?:^|\n)\s*\d+[.)]$", text[:e])]
    floor = min(len(text) // 4, 40)  # keep at least something sensible
    if ends and ends[-1] > floor:
        cut = text[: ends[-1]]
    elif "\n" in text and text.rfind("\n") > floor:
        cut = text[: text.rfind("\n")]
    else:
        words = text.rsplit(" ", 1)
        cut = (words[0] if len(words) > 1 else text).rstrip(",;:-") + "…"
    while True:  # a list marker left alone on the last line ("\n3.") goes too
        trimmed = _LIST_MARKER_LINE.sub("", cut)
        if trimmed == cut:
            return cut.strip()
        cut = trimmed


class Generator:
    """A causal LM + tokenizer that writes one reply per :class:`GenerationRequest`."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, path: Path | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.path = path
        cfg = model.config
        window = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        self.context_window = int(window or 1024)
        ids = special_ids(tokenizer)
        self.end_id = ids[END]
        self.stop_ids = sorted(
            {self.end_id} | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        # Customers' reference numbers become {{Reference N}} in the prompt (core.slots);
        # off only to measure a model trained before masking existed.
        self.mask_references = True

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> Generator:
        """Load a model folder offline; a missing or broken folder is :class:`ModelMissing`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ModelMissing(
                f"no language model at {folder} (config.json missing); "
                f"build it with `chatbot train lm --output {folder}`"
            )
        dev = pick_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, dtype=pick_dtype(dev)
            )
        except Exception as exc:  # corrupt weights, missing tokenizer files, ...
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelMissing(
                f"language model at {folder} does not load ({exc.__class__.__name__}: {first[:160]}); "
                f"rebuild it with `chatbot train lm --output {folder}`"
            ) from exc
        if ensure_special_tokens(tokenizer):  # a plain LM that never saw our format
            log.warning(
                "%s lacks the prompt tokens; added them untrained (fine-tune with `chatbot train lm --base`)",
                folder,
            )
            model.resize_token_embeddings(len(tokenizer))
        model = apply_saved_quantization(model.to(dev), folder, dev)  # a `models quantize` folder
        return cls(model, tokenizer, dev, folder)

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """One cleaned reply per request; same-settings requests share one batch."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[req.settings.model_dump_json()].append(i)
        out = [""] * len(requests)
        for members in groups.values():
            texts = self._generate_batch([requests[i] for i in members], requests[members[0]].settings)
            for i, text in zip(members, texts, strict=False):
                out[i] = text
        return out

    def _generate_batch(self, requests: list[GenerationRequest], settings: GenerationSettings) -> list[str]:
        max_new = self.max_new_tokens(settings)
        masked = [self.prompt_for(r, max_new) for r in requests]
        prompts = [ids for ids, _ in masked]
        width = max(len(p) for p in prompts)
        # Left padding: every prompt ends at the same column, so new tokens line up.
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)  # (B, T)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, T)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            repetition_penalty=settings.repetition_penalty,
            do_sample=settings.do_sample,
        )
        if settings.do_sample:  # greedy takes no sampling flags (transformers warns about them)
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
        started = time.perf_counter()
        result = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs
        )  # (B, T + new)
        GENERATION_SECONDS.observe(time.perf_counter() - started)
        GENERATION_BATCH.observe(len(prompts))
        new_tokens = result[:, width:].tolist()
        GENERATED_TOKENS.inc(sum(_written(row, self.stop_ids) for row in new_tokens))
        return [
            unmask_references(self._decode(row, max_new), values)
            for row, (_, values) in zip(new_tokens, masked, strict=False)
        ]

    def _decode(self, tokens: list[int], max_new: int) -> str:
        stops = [k for k, t in enumerate(tokens) if t in self.stop_ids]
        hit_limit = not stops and len(tokens) >= max_new
        return self._clean_text(tokens[: stops[0]] if stops else tokens, hit_limit)

    def _clean_text(self, tokens: list[int], hit_limit: bool) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return clean_reply(text, hit_limit=hit_limit)

    # The three steps below are shared with the continuous-batching service (core.batching).

    def max_new_tokens(self, settings: GenerationSettings) -> int:
        """``settings.max_new_tokens``, capped so a prompt keeps room in the context window."""
        return min(settings.max_new_tokens, self.context_window - MIN_PROMPT_TOKENS)

    def prompt_for(self, request: GenerationRequest, max_new: int) -> tuple[list[int], list[str]]:
        """The prompt ids of one request and the reference numbers its reply gets back."""
        request = scope_history(request)
        masked, values = mask_request(request) if self.mask_references else (request, [])
        return build_prompt_ids(self.tokenizer, masked, self.context_window, max_new), values

    def reply_text(self, tokens: list[int], values: list[str], *, hit_limit: bool) -> str:
        """The chat-ready reply of new tokens (stop token excluded)."""
        return unmask_references(self._clean_text(tokens, hit_limit), values)


def _written(tokens: list[int], stop_ids: Sequence[int]) -> int:
    """New tokens a row really wrote: up to and including its first stop token (the
    padding after it, while longer rows finish, is not generation)."""
    for k, token in enumerate(tokens):
        if token in stop_ids:
            return k + 1
    return len(tokens)
