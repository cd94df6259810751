"""Redis connection: the embedded server keeps data across restarts, and a configured
server that does not answer is one line naming REDIS_URL, password hidden."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.connection import connect, parse_url, redact
from core.errors import ConfigError, RedisUnavailable

SCRIPT = """
import asyncio, sys
from pathlib import Path
from core.connection import connect

async def main(mode):
    client = await connect(None, Path(sys.argv[2]))
    if mode == "write":
        await client.rpush("chatbot:test:history", "turn 1", "turn 2 \\U0001F600")
    else:
        print("|".join(await client.lrange("chatbot:test:history", 0, -1)))
    await client.aclose()

asyncio.run(main(sys.argv[1]))
"""


def _run(mode: str, data_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_embedded_redis_keeps_data_across_a_restart(tmp_path: Path) -> None:
    _run("write", tmp_path)  # the process exits, and the embedded server with it
    assert (tmp_path / "appendonly.aof").is_file()  # append-only persistence is on
    assert _run("read", tmp_path) == "turn 1|turn 2 \U0001f600"


async def test_unreachable_server_is_one_line_naming_redis_url_without_the_password(tmp_path: Path) -> None:
    url = "redis://:hunter2@127.0.0.1:1/0"
    with pytest.raises(RedisUnavailable) as info:
        await connect(url, tmp_path)
    message = str(info.value)
    assert "REDIS_URL=redis://:***@127.0.0.1:1/0" in message and "hunter2" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rediss://user:s3cret@redis.example.com:6380/2", "rediss://user:***@redis.example.com:6380/2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


async def test_hung_server_is_one_line_not_a_stall(tmp_path: Path) -> None:
    """A server that accepts connections but never answers fails after the socket
    timeout instead of stalling the caller forever."""
    import asyncio

    from core.connection import RedisOptions

    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    options = RedisOptions(connect_timeout_s=0.5, socket_timeout_s=0.5, retries=0)
    try:
        with pytest.raises(RedisUnavailable, match=re.escape("REDIS_URL=redis://127.0.0.1")):
            await connect(f"redis://127.0.0.1:{port}/0", tmp_path, options)
        assert accepted, "the client never reached the hung server"
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_more_concurrent_commands_than_connections_wait_instead_of_failing(
    redis_url: str, tmp_path: Path
) -> None:
    """128 concurrent blocking commands on a pool of 8: every one completes; none fails
    with "Too many connections" (the 500s a load test found with the default pool)."""
    import asyncio

    from core.connection import RedisOptions

    client = await connect(redis_url, tmp_path, RedisOptions(max_connections=8, pool_timeout_s=30.0))
    try:
        key = f"test-pool-{id(client)}"
        results = await asyncio.gather(*(client.blpop([key], timeout=0.05) for _ in range(128)))
        assert results == [None] * 128
        assert client.connection_pool.max_connections == 8
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "topology", "hosts", "master", "db"),
    [
        ("redis://127.0.0.1:6379/0", "server", (), "", 0),
        (
            "redis+sentinel://:pw@s1:26379,s2/mymaster/2",
            "sentinel",
            (("s1", 26379), ("s2", 26379)),
            "mymaster",
            2,
        ),
        (
            "redis+cluster://n1:7000,[::1]:7001,n3",
            "cluster",
            (("n1", 7000), ("::1", 7001), ("n3", 6379)),
            "",
            0,
        ),
        ("rediss+cluster://user:pw@n1:7000", "cluster", (("n1", 7000),), "", 0),
    ],
)
def test_redis_url_names_the_topology(
    url: str, topology: str, hosts: tuple[tuple[str, int], ...], master: str, db: int
) -> None:
    target = parse_url(url)
    assert (target.topology, target.hosts, target.master, target.db) == (topology, hosts, master, db)
    assert target.tls == url.startswith("rediss+")
    assert "pw" not in repr(target)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://:hunter2@s1:26379", "name the master"),
        ("redis+cluster://n1:70000", "not host:port"),
        ("redis+cluster://n1:7000,", "not host:port"),
        ("redis+cluster://n1:7000/3", "only database 0"),
        ("redis+sentinel://s1/mymaster/x", "database number"),
        ("memcached://n1:11211", "use redis://"),
    ],
)
async def test_a_malformed_redis_url_is_one_line_without_the_password(
    url: str, why: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        await connect(url, tmp_path)
    message = str(info.value)
    assert message.startswith("invalid setting REDIS_URL=") and why in message
    assert "hunter2" not in message and "\n" not in message


async def test_sentinels_and_cluster_nodes_that_do_not_answer_are_one_line(tmp_path: Path) -> None:
    from core.connection import RedisOptions

    quick = RedisOptions(connect_timeout_s=0.5, socket_timeout_s=0.5, retries=0)
    for url in ("redis+sentinel://127.0.0.1:1/mymaster", "redis+cluster://:hunter2@127.0.0.1:1"):
        with pytest.raises(RedisUnavailable) as info:
            await connect(url, tmp_path, quick)
        message = str(info.value)
        assert message.startswith("cannot reach Redis at REDIS_URL=") and "\n" not in message
        assert "hunter2" not in message
