"""Many web-chat customers at once against real `chatbot run` processes.

    python -m benchmarks.web_load [--customers 128 512] [--messages 2] [--workers 0]

Each simulated customer has its own cookie jar: it opens ``/`` (which sets its browser
id), then sends ``--messages`` messages to ``POST /api/chat``, each after the previous
reply arrived. Every customer starts at once. The server is `chatbot run --role all`
(``--workers 0``) or one `--role web` process plus N `--role worker` processes, with
tiny real models (a MiniLM classifier with a random head and a GPT-2 trained for a few
seconds) so the figures measure the serving path, not model quality. Prints, per
concurrency: requests, status codes, transport errors, p50/p95/max latency of a reply,
and whether any server log holds a traceback.

Needs a Redis (REDIS_URL; the embedded one otherwise); keys go to a namespace of their
own and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.reply_latency import percentile

QUESTIONS = ["where is my order?", "I want a refund", "how do I change my shipping address?"]


def tiny_models(root: Path) -> Path:
    """The two default model names, tiny: built in about half a minute on a CPU."""
    from core.training.data import BITEXT_CSV, load_examples
    from core.training.lm import train_lm
    from tests.test_intents import make_model_folder
    from tests.test_train_lm import tiny_config

    labels = sorted({e.intent for e in load_examples(BITEXT_CSV)})
    make_model_folder(
        root / "intent-default", labels, {"oos_method": "none", "threshold": 0.0, "max_length": 32}
    )
    train_lm(tiny_config(root / "lm-default"))
    return root


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """`chatbot run` processes of the chosen topology; their logs go to files."""

    def __init__(self, workers: int, env: dict[str, str], logs: Path) -> None:
        self.roles = ["all"] if workers == 0 else ["web", *["worker"] * workers]
        self.env, self.logs = env, logs
        self.ports = [free_port() for _ in self.roles]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        for n, (role, port) in enumerate(zip(self.roles, self.ports, strict=True)):
            log = (self.logs / f"{n}-{role}.log").open("wb")
            command = [sys.executable, "-m", "bots.cli", "run", "--role", role, "--port", str(port)]
            self.processes.append(
                subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            )

    async def ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            for port in self.ports:
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            break
                    if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                        raise RuntimeError(f"servers did not get ready; logs in {self.logs}")
                    await asyncio.sleep(0.5)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()

    def tracebacks(self) -> int:
        return sum(path.read_text(errors="replace").count("Traceback") for path in self.logs.glob("*.log"))


async def customer(base: str, n: int, messages: int, results: list[dict[str, Any]]) -> None:
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        try:
            page = await client.get("/")
            results.append({"kind": "page", "status": page.status_code, "seconds": 0.0})
        except httpx.TransportError as exc:
            results.append({"kind": "page", "error": type(exc).__name__})
            return
        for i in range(messages):
            start = time.perf_counter()
            try:
                r = await client.post("/api/chat", json={"text": QUESTIONS[(n + i) % len(QUESTIONS)]})
                results.append(
                    {"kind": "chat", "status": r.status_code, "seconds": time.perf_counter() - start}
                )
            except httpx.TransportError as exc:
                results.append({"kind": "chat", "error": type(exc).__name__})


async def load(base: str, customers: int, messages: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    await asyncio.gather(*(customer(base, n, messages, results) for n in range(customers)))
    wall = time.perf_counter() - start
    chats = [r for r in results if r["kind"] == "chat" and "status" in r]
    ok = sorted(r["seconds"] for r in chats if r["status"] == 200)
    return {
        "customers": customers,
        "chat_requests": sum(r["kind"] == "chat" for r in results),
        "status_codes": dict(Counter(str(r["status"]) for r in results if "status" in r)),
        "transport_errors": dict(Counter(r["error"] for r in results if "error" in r)),
        "p50_s": round(percentile(ok, 0.50), 2) if ok else None,
        "p95_s": round(percentile(ok, 0.95), 2) if ok else None,
        "max_s": round(ok[-1], 2) if ok else None,
        "mean_s": round(statistics.fmean(ok), 2) if ok else None,
        "wall_s": round(wall, 1),
        "replies_per_s": round(len(ok) / wall, 1),
    }


async def clean(namespace: str) -> None:
    from core.connection import connect

    redis = await connect(os.environ.get("REDIS_URL"), Path("var"))
    try:
        async for key in redis.scan_iter(match=f"{namespace}:*", count=500):
            await redis.delete(key)
    finally:
        await redis.aclose()


async def main(
    customers: list[int], messages: int, workers: int, models: Path | None
) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="web-load-"))
    models = models or tiny_models(work / "models")
    namespace = f"webload-{os.getpid()}"
    env = {
        **os.environ,
        "MODELS_DIR": str(models),
        "CHATBOT_NAMESPACE": namespace,
        "CHATBOT_COOKIE_SECURE": "false",  # plain http on localhost
        "CHATBOT_READY_MAX_LAG": "0",
        "DATA_DIR": str(work / "var"),
    }
    servers = Servers(workers, env, work)
    servers.start()
    rows = []
    try:
        await servers.ready()
        for count in customers:
            row = await load(servers.web, count, messages)
            row["workers"] = workers or "all-in-one"
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        servers.stop()
        await clean(namespace)
    for row in rows:
        row["server_tracebacks"] = servers.tracebacks()
    print(json.dumps({"server_tracebacks": servers.tracebacks(), "logs": str(work)}), flush=True)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--messages", type=int, default=2, help="messages per customer, one after another")
    parser.add_argument("--workers", type=int, default=0, help="0: one `--role all`; N: web + N workers")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: tiny ones)")
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.messages, args.workers, args.models))
