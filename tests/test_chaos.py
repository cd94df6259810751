"""Chaos: three `chatbot run --role worker` processes, killed with SIGKILL at random
(seeded) moments and restarted, and a Redis restart mid-run (AOF on), while 50 users
send 500 messages. Afterwards every message has exactly one reply, in order per user,
every history holds exactly its turns, and no entry was dead-lettered.

Runs against a private redis-server on a free port (never the shared one), with
scripted models (tests/chaos_worker.py), so it measures the recovery machinery. The
longer run is benchmarks/chaos.py; both use :func:`run_chaos`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.bus import Bus
from core.history import History
from core.keys import Keys
from core.messages import IncomingMessage, Reply
from core.retry import Backoff, retrying
from tests.emulators.redis_server import PrivateRedis
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ChaosFigures:
    users: int
    messages: int
    kills: int = 0
    restarts_of_redis: int = 0
    redeliveries: int = 0  # entries claimed from killed workers
    duplicates_prevented: int = 0  # committed entries read again and only acknowledged
    deferred: int = 0  # entries left pending: conversation busy elsewhere or behind
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"chaos: {self.users} users, {self.messages} messages, {self.kills} SIGKILLs, "
            f"{self.restarts_of_redis} Redis restart, {self.redeliveries} redeliveries, "
            f"{self.duplicates_prevented} duplicates prevented, {self.deferred} deferred, "
            f"{self.seconds:.1f} s"
        )


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """One `chatbot run --role worker` process (scripted models) and its last metrics."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.log = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos_worker", "run", "--role", "worker", "--port", str(self.port)],
            env={**env, "CHATBOT_PORT": str(self.port)},
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.metrics: dict[str, float] = {}

    async def scrape(self, client: httpx.AsyncClient) -> None:
        with contextlib.suppress(httpx.HTTPError):
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1)).text
            for name in (
                "chatbot_stream_claimed_total",
                "chatbot_duplicates_prevented_total",
                "chatbot_intake_deferred_total",
            ):
                total = sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
                self.metrics[name] = total

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no hand-back, no cleanup
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


async def run_chaos(
    tmp: Path,
    *,
    users: int,
    per_user: int,
    workers: int = 3,
    seed: int = 9,
    kill_every: tuple[float, float] = (1.5, 4.0),
    answer_timeout_s: float = 120.0,
) -> ChaosFigures:
    rng = random.Random(seed)
    (tmp / "redis").mkdir(exist_ok=True)
    server = await PrivateRedis(tmp / "redis").start()
    keys = Keys("chaos")
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "CHATBOT_NAMESPACE": keys.namespace,
        "CHATBOT_CLAIM_IDLE": "1.5",  # a killed worker's entries (and leases) are free after 1.5 s
        "CHATBOT_UPKEEP_INTERVAL": "0.3",
        "CHATBOT_ENGINE_BATCH": "16",
        "MODELS_DIR": str(tmp / "models"),
    }
    for var in (
        "TELEGRAM_BOT_TOKEN",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "DISCORD_BOT_TOKEN",
    ):
        env.pop(var, None)
    figures = ChaosFigures(users, users * per_user)
    client = aioredis.Redis.from_url(
        server.url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
    )
    bus = Bus(client, keys)
    pool = [Worker(env, tmp / f"worker-{n}.log") for n in range(workers)]
    retired: list[Worker] = []
    sent: dict[str, list[IncomingMessage]] = defaultdict(list)
    order = [u for u in range(users) for _ in range(per_user)]
    rng.shuffle(order)  # users interleave; each user's own messages keep their order
    loop = asyncio.get_running_loop()
    started = loop.time()
    done = asyncio.Event()

    async def submit(message: IncomingMessage) -> None:
        # a submit cut off by the Redis restart is sent again; the event id makes it once
        async for attempt in retrying(
            "chaos submit", retry_on=(RedisError, OSError), backoff=Backoff(0.05, 0.5)
        ):
            with attempt:
                await bus.submit(message, event_id=message.message_id)

    async def customers() -> None:
        for n, u in enumerate(order):
            user = f"user{u:03d}"
            m = IncomingMessage("support", "web", user, user, f"{user} message {len(sent[user])}")
            sent[user].append(m)
            await submit(m)
            if n == len(order) * 2 // 5:  # Redis restarts once, mid-run; AOF keeps its data
                await server.stop()
                await server.start()
                figures.restarts_of_redis += 1
            await asyncio.sleep(0.02)

    async def killer() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), rng.uniform(*kill_every))
            if done.is_set():
                return
            slot = rng.randrange(len(pool))
            pool[slot].kill()
            retired.append(pool[slot])
            figures.kills += 1
            pool[slot] = Worker(env, tmp / f"worker-{slot}.log")

    async def scraper() -> None:
        async with httpx.AsyncClient() as http:
            while not done.is_set():
                await asyncio.gather(*(w.scrape(http) for w in pool))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.2)
            await asyncio.gather(*(w.scrape(http) for w in pool))

    async def answered() -> bool:
        try:
            return int(await client.xlen(keys.outbound("web", "support"))) >= figures.messages
        except (RedisError, OSError):
            return False

    chaos = [asyncio.create_task(killer()), asyncio.create_task(scraper())]
    try:
        await customers()
        try:
            await wait_for(answered, timeout=answer_timeout_s, what="a reply to every message")
        except AssertionError:
            replies = int(await client.xlen(keys.outbound("web", "support")))
            figures.problems.append(
                f"{replies} of {figures.messages} answered after {answer_timeout_s:.0f} s"
            )
        done.set()
        await asyncio.gather(*chaos)
        figures.seconds = loop.time() - started
        for w in (*pool, *retired):
            figures.redeliveries += int(w.metrics.get("chatbot_stream_claimed_total", 0))
            figures.duplicates_prevented += int(w.metrics.get("chatbot_duplicates_prevented_total", 0))
            figures.deferred += int(w.metrics.get("chatbot_intake_deferred_total", 0))
        figures.problems = await _check(client, keys, sent)
    finally:
        done.set()
        for task in chaos:
            task.cancel()
        for w in pool:
            w.stop()
        await client.aclose()
        await server.stop()
    return figures


async def _check(client: aioredis.Redis, keys: Keys, sent: dict[str, list[IncomingMessage]]) -> list[str]:
    """Every message answered once, in order per user; histories exact; no dead letters."""
    problems = []
    replies: dict[str, list[str]] = defaultdict(list)
    for _, fields in await client.xrange(keys.outbound("web", "support")):
        reply = Reply.from_json(fields["data"])
        replies[reply.user_id].append(reply.in_reply_to)
    history = History(client, keys, max_turns=1000, ttl_seconds=3600)
    for user, messages in sent.items():
        if replies[user] != [m.message_id for m in messages]:
            problems.append(f"{user}: replies {replies[user]} for {[m.message_id for m in messages]}")
        turns = await history.recent(messages[0].conversation, 1000)
        expected = [(role, m.text) for m in messages for role in ("user", "bot")]
        got = [(t.role, t.text if t.role == "user" else "") for t in turns]
        if [r for r, _ in got] != [r for r, _ in expected] or [t for r, t in got if r == "user"] != [
            m.text for m in messages
        ]:
            problems.append(f"{user}: history {got}")
    if int(await client.xlen(keys.dead_letters())):
        problems.append("dead letters: " + str(await client.xrange(keys.dead_letters())))
    return problems


async def test_workers_killed_at_random_and_a_redis_restart_answer_every_message_once(tmp_path: Path) -> None:
    figures = await run_chaos(tmp_path, users=50, per_user=10)
    print(figures.line())
    assert figures.problems == []
    assert figures.kills >= 3 and figures.restarts_of_redis == 1
