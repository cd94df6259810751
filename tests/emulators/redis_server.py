"""A private redis-server that a test may stop and start again, to play a Redis outage.

Never the shared server at 6379: this one listens on its own free port, keeps its data
in the test's folder and writes every command to its append-only file, so after a
restart the streams and consumer groups are as they were.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError


class PrivateRedis:
    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; install Redis 7 to run this test")
        self.binary = binary
        self.data_dir = data_dir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> PrivateRedis:
        self._process = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)),
            *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        probe = aioredis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            for _ in range(250):  # up to ~5 s for the server to load and listen
                try:
                    if await probe.ping():
                        return self
                except (RedisError, OSError):
                    await asyncio.sleep(0.02)
        finally:
            await probe.aclose()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()
