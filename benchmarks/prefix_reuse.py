"""Prompt encoding saved by history prefix reuse, turn by turn of a conversation.

    python -m benchmarks.prefix_reuse [--conversations 8] [--exchanges 6] [--new-tokens 48]
        [--model models/lm-default] [--positions 1024] [--out reports/prefix-reuse.json]

``--conversations`` customers each send ``--exchanges`` held-out Bitext questions, one
after the other, to the default persona (its style, ``history_turns: 6``); all customers'
n-th messages are answered together, and each reply goes into the history the way the
engine stores it (slots filled from the persona's facts). Two continuous generators over
the same model answer the same messages: one keeps the prefix cache (``prefix_budget``),
one does not. Per exchange the script records prompt tokens, tokens actually encoded,
time in prompt-encoding forwards, the round's wall time, and whether both wrote the same
replies (greedy: they must). Two conversation kinds run: ``same`` (every question of a
conversation has one intent) and ``mixed`` (each question its own intent): the prompt's
``<|intent|>`` segment comes before the history, so a new intent ends the shared prefix
after the persona's style.

Without ``--model`` (or when it is missing) the model is a randomly initialised GPT-2 of
the default ``small`` preset with ``--positions`` positions (the default LM has 256, too
few for six turns of history plus a reply): the default LM's per-token cost, nonsense
replies that run to ``--new-tokens``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from bots.personas import default_personas
from core.batching import ContinuousGenerator
from core.device import configure_threads
from core.generator import Generator
from core.history import Turn
from core.messages import ConversationKey
from core.protocols import GenerationRequest
from core.slots import fill_slots
from core.training.config import PRESETS
from core.training.data import BITEXT_CSV, Example, load_examples, stratified_split
from core.training.lm import train_tokenizer


def random_lm(positions: int) -> Generator:
    """A GPT-2 of the default preset's size (``small``) with ``positions`` positions."""
    from transformers import GPT2Config, GPT2LMHeadModel

    examples = load_examples(BITEXT_CSV)[:4000]
    tokenizer = train_tokenizer([t for e in examples for t in (e.text, e.response)], 8000)
    n_layer, n_embd, n_head = PRESETS["small"]
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head
    )
    return Generator(GPT2LMHeadModel(config).eval(), tokenizer, torch.device("cpu"))


def conversations(n: int, exchanges: int, kind: str) -> list[list[Example]]:
    """``n`` conversations of ``exchanges`` held-out questions: one intent each (``same``)
    or a new intent every question (``mixed``)."""
    _train, held = stratified_split(load_examples(BITEXT_CSV), 0.1)
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in held:
        by_intent[example.intent].append(example)
    intents = sorted(i for i, xs in by_intent.items() if len(xs) >= exchanges)
    rng = random.Random(13)
    if kind == "same":
        return [rng.sample(by_intent[intent], exchanges) for intent in rng.sample(intents, n)]
    return [[rng.choice(by_intent[i]) for i in rng.sample(intents, exchanges)] for _ in range(n)]


def run(gen: Generator, dialogues: list[list[Example]], new_tokens: int, budget: int) -> list[dict[str, Any]]:
    """Answer every conversation exchange by exchange, with and without the prefix cache."""
    persona = default_personas()[0]
    settings = persona.generation.model_copy(
        update={"do_sample": False, "max_new_tokens": new_tokens, "repetition_penalty": 1.0}
    )
    services = {
        "cached": ContinuousGenerator.start(gen, backend="dense", prefix_budget=budget),
        "plain": ContinuousGenerator.start(gen, backend="dense", prefix_budget=0),
    }
    histories: list[list[Turn]] = [[] for _ in dialogues]
    rows = []
    try:
        for k in range(len(dialogues[0])):
            requests = [
                GenerationRequest(
                    text=conv[k].text,
                    intent=conv[k].intent,
                    style=persona.style,
                    history=tuple(history),
                    settings=settings,
                    conversation=ConversationKey(persona.bot_id, "web", f"chat-{c}", f"user-{c}"),
                )
                for c, (conv, history) in enumerate(zip(dialogues, histories, strict=True))
            ]
            row: dict[str, Any] = {"exchange": k + 1, "history_turns": len(requests[0].history)}
            replies: dict[str, list[str]] = {}
            for name, service in services.items():
                stats = service.backend.scheduler.stats  # type: ignore[attr-defined]
                before = (stats.encoded_tokens, stats.reused_tokens, stats.prefill_seconds)
                started = time.perf_counter()
                streams = [service.submit(r) for r in requests]
                replies[name] = [s.result() for s in streams]
                row[name] = {
                    "encoded_tokens": stats.encoded_tokens - before[0],
                    "reused_tokens": stats.reused_tokens - before[1],
                    "prefill_s": round(stats.prefill_seconds - before[2], 3),
                    "round_s": round(time.perf_counter() - started, 3),
                }
            row["prompt_tokens"] = row["plain"]["encoded_tokens"]
            row["same_replies"] = replies["cached"] == replies["plain"]
            row["encoding_saved"] = round(1 - row["cached"]["encoded_tokens"] / row["prompt_tokens"], 3)
            row["prefill_time_saved"] = round(1 - row["cached"]["prefill_s"] / row["plain"]["prefill_s"], 3)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            for history, conv, reply in zip(histories, dialogues, replies["plain"], strict=True):
                history += [Turn("user", conv[k].text), Turn("bot", fill_slots(reply, persona.facts))]
    finally:
        for service in services.values():
            service.close()
    return rows


def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    plan = configure_threads(os.environ.get("CHATBOT_TORCH_THREADS"))
    if args.model is not None and (args.model / "config.json").is_file():
        gen, name = Generator.from_pretrained(args.model, device="cpu"), str(args.model)
    else:
        gen, name = random_lm(args.positions), f"random GPT-2 `small` preset, {args.positions} positions"
    result: dict[str, Any] = {
        "model": name,
        "conversations": args.conversations,
        "new_tokens": args.new_tokens,
        "prefix_budget": args.prefix_budget,
        "threads": plan.intra_op,
    }
    for kind in ("same", "mixed"):
        dialogues = conversations(args.conversations, args.exchanges, kind)
        result[kind] = run(gen, dialogues, args.new_tokens, args.prefix_budget)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--exchanges", type=int, default=6)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--prefix-budget", type=int, default=8192, help="tokens the cache may hold")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--positions", type=int, default=1024, help="context of the random model")
    parser.add_argument("--out", type=Path, default=None)
    main(parser.parse_args())
