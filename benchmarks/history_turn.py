"""Cost of one conversation turn (append user+bot turns, read the recent window) as
the stored history grows: 10, 1,000 and 10,000 turns, reported as ratios against the
10-turn case. For contrast, the same turn with a whole-history JSON blob (read,
deserialise, append, re-serialise, write: how Rasa's RedisTrackerStore saves).

    python -m benchmarks.history_turn [--turns 400] [--out docs/img/history_turn.png]

Uses REDIS_URL when set, else the embedded Redis. Run on a quiet machine; both
variants run in the same process so the ratios compare like with like.
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

from core.connection import connect
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey

SIZES = (10, 1_000, 10_000)
TEXT = "Where is my order? It was supposed to arrive on Monday and the tracking page shows nothing."


async def per_turn_ms(history: History, redis, keys: Keys, size: int, turns: int, blob: bool) -> float:
    conv = ConversationKey("bench", "web", f"chat-{size}-{blob}", "user")
    seed = [Turn("user" if i % 2 == 0 else "bot", TEXT) for i in range(size)]
    key = keys.history(conv) + (":blob" if blob else "")
    await redis.delete(key)
    if blob:
        await redis.set(key, json.dumps([json.loads(t.to_json()) for t in seed]))
    else:
        for start in range(0, size, 1000):
            await history.append_turns(conv, seed[start : start + 1000])
    samples = []
    for _ in range(turns):
        t0 = time.perf_counter()
        if blob:
            events = json.loads(await redis.get(key))
            events += [json.loads(Turn("user", TEXT).to_json()), json.loads(Turn("bot", TEXT).to_json())]
            await redis.set(key, json.dumps(events))
            events[-8:]  # the window the engine would read (already in memory)
        else:
            await history.append_turns(conv, [Turn("user", TEXT), Turn("bot", TEXT)])
            await history.recent(conv, 8)
        samples.append((time.perf_counter() - t0) * 1000)
    await redis.delete(key, keys.user_index("web", "user"))
    return statistics.median(samples)


async def main(turns: int, out: Path | None) -> dict[str, dict[int, float]]:
    redis = await connect(os.environ.get("REDIS_URL"), Path(tempfile.mkdtemp()))
    keys = Keys("bench")
    history = History(redis, keys, max_turns=max(SIZES) + 10 * turns)
    results: dict[str, dict[int, float]] = {"list": {}, "blob": {}}
    for size in SIZES:
        results["list"][size] = await per_turn_ms(history, redis, keys, size, turns, blob=False)
        results["blob"][size] = await per_turn_ms(history, redis, keys, size, max(20, turns // 10), blob=True)
    await redis.aclose()
    head = ("stored turns", "this project (ms)", "ratio", "whole-blob (ms)", "ratio")
    print(f"{head[0]:>12} | {head[1]:>17} | {head[2]:>5} | {head[3]:>15} | {head[4]:>6}")
    for size in SIZES:
        listed, blob = results["list"][size], results["blob"][size]
        list_ratio, blob_ratio = listed / results["list"][10], blob / results["blob"][10]
        print(f"{size:>12,} | {listed:>17.3f} | {list_ratio:>5.2f} | {blob:>15.3f} | {blob_ratio:>6.1f}")
    if out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6))
        for name, label in (
            ("list", "append + window (this project)"),
            ("blob", "whole-history blob rewrite"),
        ):
            ax.plot(SIZES, [results[name][s] for s in SIZES], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("turns already stored")
        ax.set_ylabel("median ms per turn")
        ax.set_title("Cost of one turn vs. history length")
        ax.legend()
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        print(f"plot: {out}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("docs/img/history_turn.png"))
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.out))
