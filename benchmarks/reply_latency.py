"""Reply latency of the default models on this machine, through the whole engine
(intake stream -> classifier -> router -> generator -> history -> outbound stream).

    python -m benchmarks.reply_latency [--messages 40] [--models models]

Sends held-out Bitext questions one at a time (the latency a lone customer sees), then
the same number as concurrent users (one batch), and prints p50/p95 per message. The
concurrent run is reported as a ratio against the sequential one from the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bots.personas import default_personas
from core.bus import Bus
from core.connection import connect
from core.conversation import Conversations
from core.engine import Engine, EngineConfig
from core.history import History
from core.keys import Keys
from core.messages import IncomingMessage
from core.persona import PersonaStore
from core.registry import ModelRegistry
from core.tickets import Tickets
from core.training.data import BITEXT_CSV, load_examples, stratified_split


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(n: int, models_dir: Path, out: Path | None) -> dict[str, float]:
    redis = await connect(os.environ.get("REDIS_URL"), Path(tempfile.mkdtemp()))
    keys = Keys(f"bench-{os.getpid()}")
    [persona] = default_personas()
    await PersonaStore(redis, keys).put(persona)
    registry = ModelRegistry(models_dir)
    registry.intent_model(persona.models.intent)
    registry.reply_model(persona.models.lm)
    bus = Bus(redis, keys)
    conversations = Conversations(redis, keys, History(redis, keys))
    engine = Engine(
        redis,
        registry,
        bus=bus,
        personas=PersonaStore(redis, keys),
        conversations=conversations,
        tickets=Tickets(redis, keys, bus=bus, conversations=conversations),
        config=EngineConfig(batch_size=n),
    )
    _train, held = stratified_split(load_examples(BITEXT_CSV), 0.1)
    questions = [e.text for e in held[:n]]

    async def answer(batch: list[IncomingMessage]) -> None:
        for m in batch:
            await bus.submit(m)
        entries = await bus.read_intake("bench", count=len(batch), block_ms=100)
        await engine.handle(entries)

    await answer([IncomingMessage("support", "web", "warmup", "warmup", "hello")])
    sequential = []
    for i, q in enumerate(questions):
        t0 = time.perf_counter()
        await answer([IncomingMessage("support", "web", f"s{i}", f"s{i}", q)])
        sequential.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    await answer([IncomingMessage("support", "web", f"c{i}", f"c{i}", q) for i, q in enumerate(questions)])
    concurrent_total = time.perf_counter() - t0
    async for key in redis.scan_iter(match=keys.pattern()):
        await redis.delete(key)
    await redis.aclose()

    result = {
        "messages": n,
        "sequential_p50_s": statistics.median(sequential),
        "sequential_p95_s": percentile(sequential, 0.95),
        "batched_total_s": concurrent_total,
        "batched_per_message_s": concurrent_total / n,
        "batched_speedup": sum(sequential) / concurrent_total,
    }
    print(json.dumps(result, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.models, args.out))
