"""Roles: web, worker and adapter processes over one Redis, each with its own consumer
name; `chatbot chat` as a client of running workers; SIGTERM ends a worker cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from typer.testing import CliRunner

from bots.cli import app
from bots.config import load_settings
from bots.roles import Role
from bots.serve import serve
from core.bus import ENGINE_GROUP, Bus
from core.errors import ConfigError
from core.keys import Keys
from core.messages import IncomingMessage
from tests.helpers import wait_for
from tests.test_end_to_end import env, models_dir  # noqa: F401  (fixtures: tiny real models)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_roles_parse_and_a_wrong_one_is_one_line() -> None:
    assert Role.parse("adapter:telegram") == Role("adapter", "telegram")
    assert str(Role.parse("Worker")) == "worker" and Role.parse("worker").runs_engine
    assert Role.parse("web").runs_web_chat and not Role.parse("web").runs_engine
    with pytest.raises(ConfigError, match="adapter:discord"):
        Role.parse("adapter:irc")
    result = CliRunner().invoke(app, ["run", "--role", "gpu"])
    assert (
        result.exit_code == 2 and "unknown role 'gpu'" in result.output and "Traceback" not in result.output
    )


def test_an_adapter_role_without_credentials_is_one_line(env: Keys, redis) -> None:  # noqa: F811
    result = CliRunner().invoke(app, ["run", "--role", "adapter:discord", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "--role adapter:discord needs discord credentials" in result.output


def test_chat_without_a_worker_says_so_in_one_line(env: Keys, redis) -> None:  # noqa: F811
    result = CliRunner().invoke(app, ["chat", "--user", "dan", "--no-worker"], input="hi\n")
    assert result.exit_code == 2 and "no engine worker is running" in result.output


@contextlib.asynccontextmanager
async def running(role: str) -> AsyncIterator[str]:
    """``chatbot run --role ROLE`` in this process, on its own port; yields its URL."""
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(load_settings(CHATBOT_PORT=port), role=Role.parse(role), on_ready=lambda _: ready.set())
    )
    try:
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(ready.wait())], timeout=120, return_when="FIRST_COMPLETED"
        )
        if task in done:
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_web_process_and_two_workers_answer_together(env: Keys, redis) -> None:  # noqa: F811
    async with running("worker") as w1, running("worker") as w2, running("web") as web:
        async with httpx.AsyncClient(base_url=web, timeout=60) as client:
            health = (await client.get("/healthz")).json()
            assert health["role"] == "web" and "engine" not in health["loops"]
            assert health["adapters"] == {"web": "running"}
            assert (await client.get("/readyz")).status_code == 200
            for text in ("where is my order?", "I want a refund"):
                r = await client.post("/api/chat", json={"text": text})
                assert r.status_code == 200 and r.json()["text"].strip()
        for url in (w1, w2):
            async with httpx.AsyncClient(base_url=url) as client:
                ready = (await client.get("/readyz")).json()
                assert ready["ok"] and ready["role"] == "worker"
                assert (await client.get("/healthz")).json()["loops"]["engine"] == "running"
        consumers = [c["name"] for c in await redis.xinfo_consumers(env.intake(), ENGINE_GROUP)]
        assert len(consumers) == 2 and len(set(consumers)) == 2
        assert all(
            name.startswith(f"worker-{socket.gethostname().split('.')[0][:40]}-") for name in consumers
        )

        # `chatbot chat` is a client: with workers running it starts none of its own
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["chat", "--user", "fay", "--no-worker"], input="where is my order?\n"
        )
        assert result.exit_code == 0, result.output
        assert len([line for line in result.output.splitlines() if line.strip()]) == 1
        after = [c["name"] for c in await redis.xinfo_consumers(env.intake(), ENGINE_GROUP)]
        assert sorted(after) == sorted(consumers)


async def _answered(redis, keys: Keys) -> bool:
    return int(await redis.xlen(keys.outbound("web", "support"))) == 1


async def test_sigterm_stops_a_worker_process_within_its_grace_time(env: Keys, redis) -> None:  # noqa: F811
    port, grace = free_port(), 8
    process = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "run", "--role", "worker", "--port", str(port)],
        env={**os.environ, "CHATBOT_SHUTDOWN_GRACE": str(grace)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await wait_for(_probe(client, "/readyz"), timeout=120, what="the worker ready")
        await Bus(redis, env).submit(IncomingMessage("support", "web", "gus", "gus", "where is my order?"))
        await wait_for(lambda: _answered(redis, env), timeout=60, what="the worker's reply")
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, grace + 5)  # a bound, not a measurement
        output = process.stdout.read() if process.stdout else ""
        assert code == 0, output
        assert "Traceback" not in output
        assert await Bus(redis, env).pending_count(env.intake(), ENGINE_GROUP) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _probe(client: httpx.AsyncClient, path: str) -> Callable[[], object]:
    async def check() -> bool:
        try:
            return (await client.get(path)).status_code == 200
        except httpx.TransportError:
            return False

    return check


async def test_two_web_processes_each_get_the_replies_their_customers_wait_for(env: Keys, redis) -> None:  # noqa: F811
    async with running("worker"), running("web") as web1, running("web") as web2:
        clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in (web1, web2) for _ in range(3)]
        try:
            # six customers on two web processes that share one outbound stream: whichever
            # process reads a reply forwards it to the one holding the request
            replies = await asyncio.gather(
                *(
                    client.post("/api/chat", json={"text": f"where is order {n}?"})
                    for n, client in enumerate(clients)
                )
            )
        finally:
            await asyncio.gather(*(client.aclose() for client in clients))
        assert [r.status_code for r in replies] == [200] * 6
        assert all(r.json()["text"].strip() for r in replies)
        consumers = {
            c["name"] for c in await redis.xinfo_consumers(env.outbound("web", "support"), "delivery")
        }
        assert len(consumers) == 2  # both processes read the stream
