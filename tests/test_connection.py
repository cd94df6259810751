"""Redis connection: the embedded server keeps data across restarts, and a configured
server that does not answer is one line naming REDIS_URL, password hidden."""

from __future__ import annotations

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
