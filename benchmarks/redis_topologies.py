"""The engine's Redis path on one server and on a three-primary Redis Cluster: messages
answered per second with instant scripted models, so the figure is the Redis work of a
turn (intake read, admission, state load, commit, reply) and nothing else.

    python -m benchmarks.redis_topologies [--users 50] [--per-user 4] [--rounds 5] [--topology both]

Both topologies are private ``redis-server`` processes started here on free ports (the
same binary, the same machine), so the cluster's figure is reported as a ratio against
the single server's from the same run. On one server the engine commits a wave in one
transaction; in a Cluster each entry commits in its slots (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis

from core.connection import connect
from core.engine import EngineConfig
from core.keys import Keys
from core.messages import IncomingMessage
from core.persona import Persona, PersonaStore
from tests.scripted_models import build_engine


async def one_round(url: str, users: int, per_user: int) -> float:
    """Messages per second for ``users`` x ``per_user`` messages queued at once."""
    client = await connect(url, Path(tempfile.mkdtemp()))
    keys = Keys(f"bench-{uuid.uuid4().hex[:8]}")
    await PersonaStore(client, keys).put(Persona(bot_id="support", display_name="Ava"))
    engine = build_engine(client, keys, config=EngineConfig(batch_size=16, block_ms=20))
    total = users * per_user
    for i in range(per_user):
        for u in range(users):
            await engine.bus.submit(
                IncomingMessage("support", "web", f"u{u}", f"u{u}", f"q{i} [track_order:0.9]")
            )
    outbound = keys.outbound("web", "support")
    started = time.perf_counter()
    async with engine:
        while int(await client.xlen(outbound)) < total:
            await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return total / elapsed


async def measure(url: str, args: argparse.Namespace) -> float:
    await one_round(url, args.users, 1)  # warm-up: connections, scripts, groups
    rates = [await one_round(url, args.users, args.per_user) for _ in range(args.rounds)]
    return statistics.median(rates)


def start_single(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server configured like each cluster node (no persistence), on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(250):
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                break
        time.sleep(0.02)
    return process, f"redis://127.0.0.1:{port}/0"


async def main(args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    folder = Path(tempfile.mkdtemp())
    if args.topology in ("single", "both"):
        single, url = start_single(folder)
        try:
            results["single"] = await measure(url, args)
        finally:
            single.terminate()
            single.wait()
    if args.topology in ("cluster", "both"):
        from tests.emulators.redis_topologies import LocalCluster

        (folder / "cluster").mkdir()
        cluster = LocalCluster(folder / "cluster").start()
        try:
            results["cluster"] = await measure(cluster.url, args)
        finally:
            cluster.stop()
    n = args.users * args.per_user
    for name, rate in results.items():
        print(
            f"{name:8s} {rate:7.1f} messages/s  ({n} messages, {args.users} users, median of {args.rounds})"
        )
    if len(results) == 2:
        print(f"cluster / single: {results['cluster'] / results['single']:.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--per-user", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--topology", choices=("single", "cluster", "both"), default="both")
    asyncio.run(main(parser.parse_args()))
