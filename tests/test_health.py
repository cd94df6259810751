"""/healthz (liveness), /readyz (readiness) and the Prometheus metrics of a process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client import REGISTRY

from bots.health import Health
from bots.serve import build_app
from core.bus import ENGINE_GROUP, Bus
from core.connection import RedisOptions, connect
from core.delivery import Outbox
from core.errors import RateLimited
from core.keys import Keys
from core.messages import IncomingMessage, Reply, Route
from core.metrics import observe_reply
from core.retry import Backoff
from core.upkeep import StreamUpkeep
from tests.emulators.redis_server import PrivateRedis
from tests.helpers import wait_for


def client_for(health: Health) -> httpx.AsyncClient:
    app = build_app(None, [], health=health)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe")


def message(text: str = "hi") -> IncomingMessage:
    return IncomingMessage("support", "web", "u1", "u1", text)


async def test_readyz_waits_for_models_and_a_short_backlog_healthz_for_live_loops(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    engine_alive = True
    health = Health(bus, "worker", max_lag=2, needs_models=True, loops={"engine": lambda: engine_alive})
    async with client_for(health) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["problems"] == {"models": "loading"}
        assert (await client.get("/healthz")).status_code == 200  # loading models is not a reason to restart
        health.models_loaded = True
        assert (await client.get("/readyz")).status_code == 200

        await bus.ensure_group(keys.intake(), ENGINE_GROUP)
        for i in range(3):
            await bus.submit(message(f"m{i}"))
        r = await client.get("/readyz")
        assert (
            r.status_code == 503 and r.json()["intake_lag"] == 3 and "bound 2" in r.json()["problems"]["lag"]
        )

        engine_alive = False
        r = await client.get("/healthz")
        assert r.status_code == 503 and r.json()["loops"] == {"engine": "dead"}


async def test_a_redis_outage_makes_the_process_unready_but_not_dead(tmp_path: Path) -> None:
    server = await PrivateRedis(tmp_path).start()
    client = await connect(server.url, Path("var"), RedisOptions(retries=0, connect_timeout_s=0.5))
    try:
        health = Health(Bus(client, Keys("probe")), "web")
        async with client_for(health) as http:
            assert (await http.get("/readyz")).status_code == 200
            await server.stop()
            r = await http.get("/readyz")
            assert r.status_code == 503 and "redis" in r.json()["problems"]
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await client.aclose()
        await server.stop()


async def test_metrics_show_stream_depth_lag_pending_latency_and_retries(redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    await bus.submit(message("one"))
    await bus.submit(message("two"))
    await bus.read_intake("w1", count=1, block_ms=10)  # one pending, one not yet delivered
    await StreamUpkeep(bus, keys.intake(), ENGINE_GROUP, "w1").run_once()
    labels = {"stream": "stream:intake", "group": ENGINE_GROUP}
    assert REGISTRY.get_sample_value("chatbot_stream_lag", labels) == 1
    assert REGISTRY.get_sample_value("chatbot_stream_pending", labels) == 1
    assert REGISTRY.get_sample_value("chatbot_stream_length", {"stream": "stream:intake"}) == 2

    escalations = REGISTRY.get_sample_value("chatbot_escalations_opened_total") or 0.0
    incoming = message("I want a human")
    observe_reply(incoming, Reply.to(incoming, "A colleague will take over.", Route.ESCALATE))
    assert REGISTRY.get_sample_value("chatbot_escalations_opened_total") == escalations + 1
    assert REGISTRY.get_sample_value("chatbot_intake_to_reply_seconds_count", {"platform": "web"})

    attempts: list[Reply] = []

    async def deliver(reply: Reply) -> None:
        attempts.append(reply)
        if len(attempts) == 1:
            raise RateLimited(0.01)

    stop = asyncio.Event()
    outbox = Outbox(bus, "metricsplatform", "support", deliver, backoff=Backoff(first=0.01, cap=0.05))
    await bus.publish_reply(
        Reply.to(IncomingMessage("support", "metricsplatform", "c", "u", "x"), "y", Route.CANNED)
    )
    task = asyncio.create_task(outbox.run(stop))
    await wait_for(lambda: outbox.delivered == 1, what="the reply delivered after a 429")
    stop.set()
    await task
    retry_labels = {"platform": "metricsplatform", "reason": "rate_limited"}
    assert REGISTRY.get_sample_value("chatbot_delivery_retries_total", retry_labels) == 1
    delivered = {"platform": "metricsplatform"}
    assert REGISTRY.get_sample_value("chatbot_reply_to_delivered_seconds_count", delivered) == 1

    async with client_for(Health(bus, "worker")) as http:
        text = (await http.get("/metrics")).text
    assert "chatbot_stream_lag{" in text and "chatbot_reply_to_delivered_seconds_bucket" in text
