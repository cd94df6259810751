"""The engine under load: N customers at once, each waiting for its reply before writing again.

    python -m benchmarks.engine [--customers 1,8,32,128] [--messages 2] [--models models]
                                [--variants naive,waves,continuous,unpacked,int8[,uncapped]]
                                [--threads N]
                                [--out FILE] [--plot FILE]

Each simulated customer writes to the web chat's bot, waits for the reply on the
outbound stream, then writes its next message, through the real engine path: intake
stream -> intent classifier -> router -> reply model -> history -> outbound stream, on
real Redis (``REDIS_URL``, else the embedded server), with the default models and the
default persona (sampling, up to its ``max_new_tokens``). The questions are held-out
Bitext questions that the default persona answers with the model. Variants:

  naive       one message at a time, one ``model.generate`` call for each (batch size 1,
              waves), the models' weights as transformers loads them (MKL's sgemm)
  waves       the engine before continuous batching: batches of 16, one left-padded
              ``generate`` per wave, next batch when the wave is committed
  continuous  continuous batching (``core.batching.ContinuousGenerator``, our dense
              KV-cache scheduler on CPU); replies committed as each ends
  unpacked    continuous, with the weights as transformers loads them (MKL's sgemm): what
              the packed oneDNN layers add
  int8        continuous, with the reply model's Linear layers in int8 (CPU)
  uncapped    continuous, without the cap on partials per second (``partials_per_s`` 0): what
              the cap adds (not run unless named)

waves, continuous and int8 load their models as serving does: float32 Linear layers
packed for oneDNN (``core.packed_linear``; int8: the classifier's).

Per variant and number of customers: replies/s, generated tokens/s (the model's own
count), time to first text (the first partial of a streamed reply, else the reply),
p50/p95 reply latency, partials the customers saw, and replies/s as a ratio against
``naive`` at the same load.
Each run starts with fresh conversations (its own key namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.bus import Bus
from core.messages import IncomingMessage
from core.partials import Partials

BOT = "support"
VARIANTS = ("naive", "waves", "continuous", "unpacked", "int8", "uncapped")
DEFAULT_VARIANTS = VARIANTS[:5]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


@dataclass
class Result:
    customers: int
    replies: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_text: list[float] = field(default_factory=list)  # first partial, else the reply
    errors: list[str] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)  # replies per route (generate, ...)
    partials: int = 0  # partial replies the customers saw

    def summary(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "replies": self.replies,
            "seconds": round(self.seconds, 2),
            "replies_per_s": round(self.replies / self.seconds, 2) if self.seconds else 0.0,
            "first_text_p50_s": round(statistics.median(self.first_text), 3) if self.first_text else None,
            "p50_s": round(statistics.median(self.latencies), 3) if self.latencies else None,
            "p95_s": round(percentile(self.latencies, 0.95), 3) if self.latencies else None,
            "routes": dict(sorted(self.routes.items())),
            "partials": self.partials,
            "errors": self.errors[:10],
        }


class Customers:
    """Simulated customers of one bot's web chat, reading replies off the outbound stream
    (as the web adapter does) and partials off the partials stream."""

    def __init__(self, bus: Bus, partials: Partials, bot: str, questions: Sequence[str]) -> None:
        self.bus = bus
        self.partials = partials
        self.bot = bot
        self.questions = list(questions)
        self.sent: dict[str, list[str]] = defaultdict(list)  # user -> message ids in order
        self.answered: dict[str, list[str]] = defaultdict(list)  # user -> replies' in_reply_to
        self._waiting: dict[str, asyncio.Future[float]] = {}  # message id -> reply time
        self._first: dict[str, float] = {}  # message id -> first partial time
        self._partials = 0  # seen so far
        self._done = False

    async def run(self, customers: int, messages: int) -> Result:
        """``customers`` at once, ``messages`` each; every reply checked off exactly once."""
        result = Result(customers)
        run_id = uuid.uuid4().hex[:6]
        self._done = False
        replies = asyncio.create_task(self._read_replies(result))
        partials = asyncio.create_task(self._read_partials(await self.partials.position("web", self.bot)))
        started, partials_before = time.perf_counter(), self._partials
        try:
            await asyncio.gather(
                *(self._customer(f"{run_id}-{i}", i, messages, result) for i in range(customers))
            )
        finally:
            result.seconds = time.perf_counter() - started
            result.partials = self._partials - partials_before
            self._done = True  # the replies' reader stops after its current read
            partials.cancel()  # an XREAD of partials; a cancelled XREADGROUP can hang (redis-py)
            await asyncio.wait([replies, partials], timeout=5)
        return result

    async def _customer(self, user: str, index: int, messages: int, result: Result) -> None:
        loop = asyncio.get_running_loop()
        for k in range(messages):
            text = self.questions[(index * messages + k) % len(self.questions)]
            message = IncomingMessage(self.bot, "web", user, user, text)
            answered: asyncio.Future[float] = loop.create_future()
            self._waiting[message.message_id] = answered
            self.sent[user].append(message.message_id)
            sent_at = time.perf_counter()
            await self.bus.submit(message)
            replied_at = await answered
            result.replies += 1
            result.latencies.append(replied_at - sent_at)
            first = min(self._first.get(message.message_id, replied_at), replied_at)
            result.first_text.append(first - sent_at)

    async def _read_replies(self, result: Result) -> None:
        while not self._done:
            entries = await self.bus.read_outbound("web", self.bot, "benchmark", count=500, block_ms=50)
            now = time.perf_counter()
            for _entry_id, reply in entries:
                self.answered[reply.user_id].append(reply.in_reply_to)
                result.routes[reply.route.value] = result.routes.get(reply.route.value, 0) + 1
                waiting = self._waiting.get(reply.in_reply_to)
                if waiting is None or waiting.done():
                    result.errors.append(f"unexpected or second reply to {reply.in_reply_to}")
                    continue
                if not reply.text:
                    result.errors.append(f"empty reply to {reply.in_reply_to}")
                waiting.set_result(now)
            if entries:
                await self.bus.ack_outbound("web", self.bot, [entry_id for entry_id, _ in entries])

    async def _read_partials(self, after: str) -> None:
        async for partial in self.partials.follow("web", self.bot, after=after, block_ms=50):
            self._first.setdefault(partial.in_reply_to, time.perf_counter())
            self._partials += 1


# ---------------------------------------------------------------- the full benchmark


def questions_the_model_answers(models: Models, persona: Any, n: int) -> list[str]:
    """Held-out Bitext questions the default persona routes to the reply model."""
    from core import router
    from core.conversation import ConversationState
    from core.training.data import BITEXT_CSV, load_examples, stratified_split

    _train, held = stratified_split(load_examples(BITEXT_CSV), 0.1)
    texts = [e.text for e in held[: 4 * n]]
    predictions = models.intents.predict(texts)
    keep = []
    for text, prediction in zip(texts, predictions, strict=True):
        situation = router.Situation(text, persona, ConversationState(), prediction)
        if router.decide(situation).says == "model":
            keep.append(text)
    return keep[:n]


def bench_persona(best_of: int) -> Any:
    """The default persona with ``best_of`` candidates per reply (1 by default: every
    variant, the naive baseline included, writes one reply per message)."""
    from bots.personas import default_personas

    persona = default_personas()[0]
    generation = persona.generation.model_copy(update={"best_of": best_of})
    return persona.model_copy(update={"generation": generation})


async def run_variant(
    variant: str,
    customers: int,
    messages: int,
    models: Models,
    questions: list[str],
    redis: Any,
    best_of: int = 1,
) -> dict[str, Any]:
    from core.conversation import Conversations
    from core.engine import Engine, EngineConfig
    from core.history import History
    from core.keys import Keys
    from core.metrics import GENERATED_TOKENS
    from core.persona import PersonaStore
    from core.tickets import Tickets

    keys = Keys(f"bench-{uuid.uuid4().hex[:8]}")
    await PersonaStore(redis, keys).put(bench_persona(best_of))
    bus = Bus(redis, keys)
    conversations = Conversations(redis, keys, History(redis, keys))
    config = EngineConfig(
        batch_size=1 if variant == "naive" else 16,
        generation="waves" if variant in ("naive", "waves") else "continuous",
        max_in_flight=max(64, customers),
        block_ms=50,
        **({"partials_per_s": 0.0} if variant == "uncapped" else {}),
    )
    engine = Engine(
        redis,
        models,
        bus=bus,
        personas=PersonaStore(redis, keys),
        conversations=conversations,
        tickets=Tickets(redis, keys, bus=bus, conversations=conversations),
        config=config,
    )
    people = Customers(bus, engine.partials, BOT, questions)
    tokens_before = GENERATED_TOKENS._value.get()
    prefill_before = prefill_counts(models)
    try:
        async with engine:
            result = await people.run(customers, messages)
    finally:
        async for key in redis.scan_iter(match=keys.pattern(), count=1000):
            await redis.delete(key)
    for user, ids in people.sent.items():
        if people.answered[user] != ids:
            result.errors.append(f"{user}: replies out of order or missing")
    summary = result.summary()
    tokens = GENERATED_TOKENS._value.get() - tokens_before
    summary.update(variant=variant, messages_each=messages, generated_tokens=int(tokens))
    summary["tokens_per_s"] = round(tokens / result.seconds, 1) if result.seconds else 0.0
    after = prefill_counts(models)
    if after is not None and prefill_before is not None:  # prompt tokens encoded / taken from the cache
        summary["prompt_tokens"] = {k: after[k] - prefill_before[k] for k in after}
    return summary


def prefill_counts(models: Models) -> dict[str, int] | None:
    """The continuous scheduler's prompt-token counters (None for the wave variants)."""
    loaded = models.lm.reply_model(bench_persona(1).models.lm)
    scheduler = getattr(getattr(getattr(loaded, "model", None), "backend", None), "scheduler", None)
    if scheduler is None:
        return None
    return {"encoded": scheduler.stats.encoded_tokens, "reused": scheduler.stats.reused_tokens}


@dataclass
class Models:
    """A variant's intent classifier and reply model, each from its own registry as
    serving loads them (the same classifier folder, so every variant routes a message
    the same way; on the continuous registries it runs on the models' lane)."""

    intents: Any
    lm: Any  # a ModelRegistry

    def intent_model(self, name: str) -> Any:
        return self.intents

    def reply_model(self, name: str) -> Any:
        return self.lm.reply_model(name)


def registries(models: Path, variants: Sequence[str], intent: str) -> dict[str, Models]:
    from core.registry import ModelRegistry

    made = {"naive": ModelRegistry(models, "cpu", generation="waves", packed=False)}
    if "waves" in variants:
        made["waves"] = ModelRegistry(models, "cpu", generation="waves")
    if "continuous" in variants or "uncapped" in variants:  # the same models, engines apart
        made["continuous"] = made["uncapped"] = ModelRegistry(models, "cpu", generation="continuous")
    if "unpacked" in variants:
        made["unpacked"] = ModelRegistry(models, "cpu", generation="continuous", packed=False)
    if "int8" in variants:
        made["int8"] = ModelRegistry(models, "cpu", generation="continuous", int8=True)
    return {v: Models(made[v].intent_model(intent), made[v]) for v in variants}


async def main(
    counts: list[int],
    messages: int,
    models: Path,
    variants: list[str],
    min_replies: int,
    threads: int,
    best_of: int = 1,
) -> dict[str, Any]:
    import torch

    from core.device import THREADS_ENV, configure_threads

    configure_threads(str(threads) if threads else os.environ.get(THREADS_ENV))  # as `chatbot run` does
    from core.connection import connect

    logging.getLogger("transformers").setLevel(logging.ERROR)
    redis = await connect(os.environ.get("REDIS_URL"), Path(tempfile.mkdtemp()))
    persona = bench_persona(best_of)
    by_variant = registries(models, variants, persona.models.intent)
    lms = {id(m.lm): m.lm for m in by_variant.values()}.values()
    for lm in lms:  # load each reply model before the clock starts
        lm.reply_model(persona.models.lm)
    questions = questions_the_model_answers(by_variant["naive"], persona, 64)
    runs: list[dict[str, Any]] = []
    try:
        for variant in variants:  # warm-up: one short exchange each
            await run_variant(variant, 2, 1, by_variant[variant], questions, redis, best_of)
        for customers in counts:
            each = max(messages, math.ceil(min_replies / customers))
            # variants interleaved per load, so a busy spell on a shared machine hits them all
            for variant in variants:
                summary = await run_variant(
                    variant, customers, each, by_variant[variant], questions, redis, best_of
                )
                runs.append(summary)
                print(json.dumps(summary), file=sys.stderr, flush=True)
    finally:
        for lm in lms:
            lm.close()
        await redis.aclose()
    for run in runs:
        base = next(r for r in runs if r["variant"] == "naive" and r["customers"] == run["customers"])
        rate = base["replies_per_s"]
        run["x_naive"] = round(run["replies_per_s"] / rate, 2) if rate else None
    return {
        "model": str(models / persona.models.lm),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "best_of": best_of,
        "runs": runs,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| customers | variant | replies/s | × naive | tokens/s | first text p50 | p50 | p95 | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['customers']} | {r['variant']} | {r['replies_per_s']} | {r['x_naive']} | "
            f"{r['tokens_per_s']} | {r['first_text_p50_s']} s | {r['p50_s']} s | {r['p95_s']} s | "
            f"{len(r['errors'])} |"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for variant in dict.fromkeys(r["variant"] for r in report["runs"]):
        runs = [r for r in report["runs"] if r["variant"] == variant]
        xs = [r["customers"] for r in runs]
        left.plot(xs, [r["replies_per_s"] for r in runs], marker="o", label=variant)
        right.plot(xs, [r["p95_s"] for r in runs], marker="o", label=variant)
    for ax, title in ((left, "throughput (replies/s)"), (right, "p95 reply latency (s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent customers")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    right.set_yscale("log")
    left.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="1,8,32,128")
    parser.add_argument("--messages", type=int, default=2, help="messages per customer (at least)")
    parser.add_argument("--min-replies", type=int, default=16, help="at low loads, more messages each")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: as `chatbot run` sets them, core.device.configure_threads)",
    )
    parser.add_argument("--best-of", type=int, default=1, help="candidates per reply (the persona's is 2)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    chosen = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or "naive" not in chosen:
        sys.exit(f"--variants: choose from {', '.join(VARIANTS)}, naive included (the baseline)")
    counts = [int(n) for n in args.customers.split(",")]
    report = asyncio.run(
        main(counts, args.messages, args.models, chosen, args.min_replies, args.threads, args.best_of)
    )
    print(table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    if args.plot:
        plot(report, args.plot)
