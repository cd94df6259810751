"""What every webhook endpoint shares: the secret header, the route, 503 while Redis is down."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from adapters.base import Event, Intake
from adapters.webchat import WebChatAdapter
from adapters.webhooks import check_secret, queued, webhook_routes
from adapters.webjson import answers_bad_requests
from core.bus import Bus
from core.keys import Keys
from core.messages import IncomingMessage

HEADER = "X-Hook-Secret"


@answers_bad_requests
async def hook(request: Request) -> Response:
    check_secret(request, HEADER, "s3cret")
    return Response("ok")


async def test_the_secret_header_is_required_and_compared() -> None:
    app = Starlette(routes=webhook_routes("/hook", hook))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        missing = await http.post("/hook")
        wrong = await http.post("/hook", headers={HEADER: "guess"})
        right = await http.post("/hook", headers={HEADER: "s3cret"})
        get = await http.get("/hook", headers={HEADER: "s3cret"})
    assert (missing.status_code, missing.json()["error"]) == (401, f"missing {HEADER}")
    assert (wrong.status_code, wrong.json()["error"]) == (403, f"wrong {HEADER}")
    assert (right.status_code, right.text) == (200, "ok")
    assert get.status_code == 405  # platforms POST their updates


def test_no_route_without_a_path() -> None:
    assert webhook_routes(None, hook) == []


def message(chat: str) -> Event:
    return Event(IncomingMessage("support", "web", chat, chat, "hello"), f"ev-{chat}", direct=True)


async def test_queued_answers_200_once_the_event_is_on_the_stream(redis: aioredis.Redis, keys: Keys) -> None:
    adapter = WebChatAdapter(Bus(redis, keys), bot_id="support")
    answer = await queued(adapter.accept(message("u1"), hold=False), "update 1")
    assert answer.status_code == 200 and adapter.stats[Intake.SUBMITTED] == 1


async def test_queued_answers_503_while_redis_is_down(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])  # nothing listens there once the probe is closed
    nowhere = aioredis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    adapter = WebChatAdapter(Bus(nowhere, keys), bot_id="support")
    with caplog.at_level(logging.WARNING, logger="adapters.webhooks"):
        answer = await queued(adapter.accept(message("u2"), hold=False), "update 2")
    assert answer.status_code == 503
    assert "update 2 not queued" in caplog.text and "will resend" in caplog.text
    await nowhere.aclose()
