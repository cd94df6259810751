"""Private Redis topologies for the tests that need them: a three-primary Redis Cluster,
and a master with one replica watched by a Sentinel.

Real ``redis-server`` processes (``make dev`` installs Debian's ``redis-server`` when it
is missing) on free ports, with their files in the test's temporary folder; never the
shared server at 6379. The cluster is formed with ``CLUSTER ADDSLOTS`` and ``CLUSTER
MEET`` (no ``redis-cli`` needed); the Sentinel is ``redis-server --sentinel``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.exceptions import RedisError

SLOTS = 16384


def redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:  # only where it cannot be installed: `make dev` installs it
        pytest.skip("redis-server is not installed (make dev installs Debian's redis-server)")
    return binary


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(RedisError, OSError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Servers:
    def __init__(self, folder: Path) -> None:
        self.binary = redis_server()
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"server-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [self.binary, *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
        )
        self.processes.append(process)
        return process

    def server(self, port: int, *extra: str) -> redis.Redis:
        self.spawn(
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
            *("--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb", *extra),
        )
        client = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
        until(lambda: bool(client.ping()), f"redis-server on port {port}")
        return client

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class LocalCluster(_Servers):
    """Three primaries, the slots split evenly, no replicas."""

    def __init__(self, folder: Path, primaries: int = 3) -> None:
        super().__init__(folder)
        self.ports = [free_port() for _ in range(primaries)]
        self.bus_ports = [free_port() for _ in range(primaries)]  # the cluster bus of each
        self.clients: list[redis.Redis] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> LocalCluster:
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            self.clients.append(
                self.server(
                    port,
                    *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                    *("--cluster-port", str(bus), "--cluster-node-timeout", "3000"),
                )
            )
        share = SLOTS // len(self.ports)
        for n, client in enumerate(self.clients):
            last = SLOTS - 1 if n == len(self.clients) - 1 else (n + 1) * share - 1
            client.execute_command("CLUSTER ADDSLOTS", *range(n * share, last + 1))
        for port, bus in zip(self.ports[1:], self.bus_ports[1:], strict=True):
            self.clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port, bus)
        for client in self.clients:
            until(lambda c=client: self._formed(c.execute_command("CLUSTER INFO")), "the cluster to form")
        return self

    def _formed(self, info: dict[str, str]) -> bool:
        return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(self.ports)

    def port_of_slot(self, slot: int) -> int:
        """Which primary serves ``slot``."""
        for start, end, (_host, port, *_rest), *_replicas in self.clients[0].execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(port)
        raise AssertionError(f"no node serves slot {slot}")


class LocalSentinel(_Servers):
    """A master, one replica of it, and one Sentinel (quorum 1) watching ``mymaster``."""

    MASTER = "mymaster"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.MASTER}"

    def start(self) -> LocalSentinel:
        master = self.server(self.master_port, "--repl-diskless-sync-delay", "0")
        self.server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        # the Sentinel learns the replica from the master's INFO: start it once it is there
        until(lambda: master.info("replication").get("slave0", {}).get("state") == "online", "replica sync")
        config = self.folder / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
            f"sentinel failover-timeout {self.MASTER} 5000\n"
        )
        self.spawn(str(config), "--sentinel")
        self.sentinel = redis.Redis(port=self.sentinel_port, decode_responses=True, socket_timeout=5)
        until(self._replica_ready, "the Sentinel to see the replica in sync")
        return self

    def _replica_ready(self) -> bool:
        """The Sentinel lists the replica, up and linked to its master (promotable)."""
        replicas = self.sentinel.execute_command("SENTINEL", "REPLICAS", self.MASTER)
        if len(replicas) != 1:
            return False
        replica = replicas[0]
        if not isinstance(replica, dict):  # a flat name, value, name, value... list
            replica = dict(zip(replica[::2], replica[1::2], strict=True))
        return replica.get("flags") == "slave" and replica.get("master-link-status") == "ok"

    def master_address(self) -> tuple[str, int]:
        host, port = self.sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
        return str(host), int(port)

    def fail_over(self) -> None:
        """Promote the replica (``SENTINEL FAILOVER``) and wait until it is the master."""
        self.sentinel.execute_command("SENTINEL", "FAILOVER", self.MASTER)
        replica = redis.Redis(port=self.replica_port, decode_responses=True, socket_timeout=5)
        until(lambda: self.master_address()[1] == self.replica_port, "the Sentinel to name the new master")
        until(lambda: replica.info("replication")["role"] == "master", "the replica to be promoted")
