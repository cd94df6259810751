"""Generator-level throughput: one ``generate`` per request against batched paths.

    python -m benchmarks.generation [--prompts 32] [--new-tokens 64] [--model models/lm-default]

The same prompts (held-out Bitext questions with the default persona's style), greedy,
``--new-tokens`` each, answered by

  naive     one ``Generator.generate`` call per request, one request at a time;
  padded    one left-padded ``model.generate`` over all of them (today's engine wave);
  dense     core.batching's scheduler over a dense KV cache (CPU default);
  library   transformers' ContinuousBatchingManager, paged attention (CUDA default);
  dense+int8  the dense scheduler on the int8-quantised model.

All paths must write the same replies (greedy decoding, no repetition penalty since the
library drops it); the int8 model is a different model, so its replies are only counted.
Figures are ratios against ``naive`` from the same run. Without ``--model`` (or when the
folder is missing) the model is a randomly initialised GPT-2 of the default ``small``
preset with a BPE tokenizer trained on Bitext: same size and speed, nonsense replies,
and every reply runs to ``--new-tokens`` (it never writes ``<|end|>``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bots.personas import default_personas
from core.batching import ContinuousGenerator, DenseBackend, LibraryBackend
from core.generator import Generator
from core.persona import GenerationSettings
from core.protocols import GenerationRequest
from core.quantize import quantize_int8
from core.training.data import BITEXT_CSV, load_examples, stratified_split
from core.training.lm import PRESETS, train_tokenizer

DEFAULT_MODEL = Path("models/lm-default")


def random_default_lm() -> Generator:
    """A GPT-2 of the default preset's size (``small``, 8,000-token BPE, 256 positions)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    examples = load_examples(BITEXT_CSV)[:4000]
    tokenizer = train_tokenizer([t for e in examples for t in (e.text, e.response)], 8000)
    n_layer, n_embd, n_head = PRESETS["small"]
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=n_embd, n_layer=n_layer, n_head=n_head
    )
    return Generator(GPT2LMHeadModel(config).eval(), tokenizer, torch.device("cpu"))


def load(model: Path | None) -> tuple[Generator, str]:
    if model is not None and (model / "config.json").is_file():
        return Generator.from_pretrained(model, device="cpu"), str(model)
    return random_default_lm(), "random GPT-2 `small` preset (no trained model found)"


def requests(n: int, new_tokens: int) -> list[GenerationRequest]:
    persona = default_personas()[0]
    settings = GenerationSettings(do_sample=False, max_new_tokens=new_tokens, repetition_penalty=1.0)
    _train, held = stratified_split(load_examples(BITEXT_CSV), 0.1)
    return [
        GenerationRequest(text=e.text, intent=e.intent, style=persona.style, settings=settings)
        for e in held[:n]
    ]


def answer(service: ContinuousGenerator, reqs: list[GenerationRequest]) -> tuple[list[str], int]:
    """All requests submitted at once; the replies and how many tokens were generated."""
    streams = [service.submit(r) for r in reqs]
    replies = [s.result() for s in streams]
    return replies, sum(len(s.tokens) for s in streams)


def main(n: int, new_tokens: int, model_dir: Path | None, out: Path | None) -> dict[str, object]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    gen, model_name = load(model_dir)
    reqs = requests(n, new_tokens)
    warm = reqs[:2]
    params = sum(p.numel() for p in gen.model.parameters())
    rows: dict[str, tuple[float, list[str], int]] = {}

    def measure(name: str, run: Callable[[list[GenerationRequest]], tuple[list[str], int]]) -> None:
        run(warm)
        t0 = time.perf_counter()
        replies, tokens = run(reqs)
        rows[name] = (time.perf_counter() - t0, replies, tokens)

    # naive and padded write the same tokens as dense (checked below), so they borrow its count
    measure("naive", lambda rs: ([gen.generate([r])[0] for r in rs], 0))
    measure("padded", lambda rs: (gen.generate(rs), 0))
    with ContinuousGenerator(gen, DenseBackend(gen.model, kv_budget=1 << 20)) as dense:
        measure("dense", lambda rs: answer(dense, rs))
    with ContinuousGenerator(gen, LibraryBackend(gen.model, kv_budget=n * 512)) as library:
        measure("library", lambda rs: answer(library, rs))
    int8_gen = quantize_int8(gen)  # last: this converts the model in place
    with ContinuousGenerator(int8_gen, DenseBackend(int8_gen.model, kv_budget=1 << 20)) as int8:
        measure("dense+int8", lambda rs: answer(int8, rs))

    base_s, naive_replies, _ = rows["naive"]
    tokens = rows["dense"][2]
    result: dict[str, object] = {
        "model": model_name,
        "params": params,
        "prompts": n,
        "new_tokens": new_tokens,
        "threads": torch.get_num_threads(),
        "generated_tokens": tokens,
    }
    for name, (seconds, replies, count) in rows.items():
        result[name] = {
            "replies_per_s": round(n / seconds, 2),
            "tokens_per_s": round((count or tokens) / seconds, 1),
            "speedup": round(base_s / seconds, 2),
            # the int8 model is another model: its replies may differ, its own tokens are counted
            "same_replies_as_naive": replies == naive_replies,
        }
    print(json.dumps(result, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    main(args.prompts, args.new_tokens, args.model, args.out)
