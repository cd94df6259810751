"""Redis connection: the embedded server keeps data across restarts, and a configured
server that does not answer is one line naming REDIS_URL, password hidden."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.connection import connect, redact
from core.errors import RedisUnavailable

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
