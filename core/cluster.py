"""Redis Cluster: keeping every transaction, script and multi-key command in one slot.

On one server (or behind Sentinel) a transaction may touch any keys. In a Cluster a
MULTI/EXEC, a Lua script or a multi-key command must keep to one hash slot;
``core.keys`` tags the keys so that the ones written together share a slot. This module
has the rest, and on a single server every helper is a no-op (``is_cluster`` is false):

- :func:`on_slot`: the client to run a WATCH/MULTI transaction in one key's slot (in a
  Cluster a plain client of the primary serving that slot: redis-py's cluster pipeline
  runs WATCHed reads through threads, which asyncio code cannot use);
- :func:`by_slot`: keys grouped by slot, for scripts and commands over many keys;
- cross-slot *changes*: a change is written onto a recording pipeline
  (:func:`recorder`, the same ``queue_*`` writers as on one server), then
  :func:`split` into the commands of its *home* slot and *follow-up* groups, one per
  other slot. The caller runs the home commands in its own transaction together with
  the encoded follow-ups (the change's durable to-do), then :func:`apply` runs the
  groups, one Lua call per slot, each group only if its marker key in that slot
  (``Keys.applied``) is new: a group retried after a crash, or by a second process,
  is applied exactly once.
  Whoever finds the to-do later (the engine on a redelivered entry, the ticket relay)
  calls :func:`apply` again. docs/scaling.md explains the order of the steps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)

from core.keys import Keys

# Redis unreachable, on any topology (redis-py's cluster client raises its own type
# when no node answers), and a slot that is moving or has no primary for a moment.
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)
SLOT_IN_FLUX: tuple[type[BaseException], ...] = (
    AskError,
    TryAgainError,
    ClusterDownError,
    RedisClusterException,
)
APPLIED_TTL_SECONDS = 7 * 24 * 3600  # as long as the idempotency records
Command = list[str]  # one Redis command, every argument as text
Group = tuple[str, list[Command]]  # (a key in the group's slot, its commands)

# KEYS = one marker per group, then every key the groups touch (declared for the
# Cluster); ARGV[1] = marker ttl, ARGV[2] = JSON: the groups' command lists, in the
# markers' order. Applies each group whose marker is new.
_APPLY = """
local applied = 0
for i, commands in ipairs(cjson.decode(ARGV[2])) do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    for _, command in ipairs(commands) do
      redis.call(unpack(command))
    end
    applied = applied + 1
  end
end
return applied
"""


class ClusterClient(RedisCluster):
    """redis-py's cluster client, plus a plain client per primary for transactions
    (:func:`on_slot`) and the URL the ``limits`` library needs for its own client."""

    def __init__(
        self,
        *,
        node_options: dict[str, Any],
        pool_timeout_s: float,
        limits_uri: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.node_max_connections = int(kwargs.get("max_connections", 64))
        self.node_options = node_options
        self.pool_timeout_s = pool_timeout_s
        self.limits_uri = limits_uri
        self._node_clients: dict[str, aioredis.Redis] = {}

    def node_client(self, key: str) -> aioredis.Redis:
        """A plain client of the primary that serves ``key``'s slot now."""
        node = self.get_node_from_key(key)
        if node is None:
            raise SlotNotCoveredError(f"no primary serves the slot of {key!r} now")
        client = self._node_clients.get(node.name)
        if client is None:
            options = dict(self.node_options)
            ssl = options.pop("ssl", False)
            pool = aioredis.BlockingConnectionPool(
                host=node.host,
                port=int(node.port),
                max_connections=self.node_max_connections,
                timeout=self.pool_timeout_s,
                connection_class=aioredis.SSLConnection if ssl else aioredis.Connection,
                **options,
            )
            client = self._node_clients[node.name] = aioredis.Redis.from_pool(pool)
        return client

    async def aclose(self) -> None:
        clients, self._node_clients = list(self._node_clients.values()), {}
        for client in clients:
            await client.aclose()
        await super().aclose()


def is_cluster(redis: Any) -> bool:
    return isinstance(redis, RedisCluster)


def on_slot(redis: aioredis.Redis, key: str) -> aioredis.Redis:
    """The client for a transaction in ``key``'s slot (``redis`` itself on one server)."""
    return redis.node_client(key) if isinstance(redis, ClusterClient) else redis


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


def by_slot(redis: Any, keys: Iterable[str]) -> list[list[str]]:
    """``keys`` in groups that share a slot (one group on one server), order kept."""
    keys = list(keys)
    if not is_cluster(redis):
        return [keys] if keys else []
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(slot_of(key), []).append(key)
    return list(groups.values())


async def get_many(redis: aioredis.Redis, keys: Sequence[str]) -> list[Any]:
    """MGET, split by slot in a Cluster (not atomic there; every caller reads hints)."""
    if not keys:
        return []
    if isinstance(redis, RedisCluster):
        return list(await redis.mget_nonatomic(list(keys)))
    return list(await redis.mget(list(keys)))


# -- cross-slot changes -------------------------------------------------------------------
_recording_client: aioredis.Redis | None = None


def recorder() -> Pipeline:
    """A pipeline that is never executed: the ``queue_*`` writers write a change onto
    it, and :func:`commands` reads it back."""
    global _recording_client
    if _recording_client is None:
        _recording_client = aioredis.Redis()  # never connects: nothing is executed on it
    return _recording_client.pipeline(transaction=False)


def commands(pipe: Pipeline) -> list[Command]:
    return [[_text(arg) for arg in args] for args, _options in pipe.command_stack]


def _text(arg: Any) -> str:
    """An argument as redis-py would send it (floats by ``repr``), as text."""
    if isinstance(arg, bytes):
        return arg.decode()
    if isinstance(arg, float):
        return repr(arg)
    return str(arg)


def keys_of(command: Command) -> list[str]:
    name = command[0].upper()
    if name in ("EVAL", "EVALSHA"):
        return command[3 : 3 + int(command[2])]
    if name == "PUBLISH":
        return []
    if name in ("DEL", "UNLINK", "EXISTS", "TOUCH"):
        return command[1:]
    return command[1:2]


def split(change: Sequence[Command], home_key: str) -> tuple[list[Command], list[Group]]:
    """The commands in ``home_key``'s slot, and the others grouped by slot in the order
    first written. A command without a key (PUBLISH) goes with the one before it, so a
    ticket event is published with the ticket's write."""
    home_slot = slot_of(home_key)
    home: list[Command] = []
    groups: dict[int, Group] = {}
    current = home_slot
    for command in change:
        keys = keys_of(command)
        if keys:
            slots = {slot_of(k) for k in keys}
            if len(slots) > 1:
                raise ValueError(f"{command[0]} touches keys of several slots: {keys}")
            current = slots.pop()
        if current == home_slot:
            home.append(command)
            continue
        if command[0].upper() in ("EVAL", "EVALSHA"):
            raise ValueError("a follow-up cannot run a script (it is applied by one)")
        if current not in groups:
            groups[current] = (keys[0], [])  # a keyless command never opens a group
        groups[current][1].append(command)
    return home, list(groups.values())


def encode(groups: Sequence[Group], **extra: Any) -> str:
    return json.dumps({**extra, "groups": [[key, cmds] for key, cmds in groups]}, ensure_ascii=False)


def decode(text: str) -> tuple[list[Group], dict[str, Any]]:
    data = json.loads(text)
    groups = [(str(key), [list(map(str, c)) for c in cmds]) for key, cmds in data.pop("groups", [])]
    return groups, data


async def apply(redis: aioredis.Redis, keys: Keys, changes: Sequence[tuple[str, Sequence[Group]]]) -> int:
    """Run the follow-up groups of ``changes`` (``(change id, groups)``), each once per
    change id however often this is called: one Lua call per slot for all the groups
    in it, the slots in parallel. Returns how many groups were applied now."""
    per_slot: dict[int, list[tuple[str, list[Command]]]] = {}
    for change_id, groups in changes:
        for key, cmds in groups:
            per_slot.setdefault(slot_of(key), []).append((keys.applied(key, change_id), cmds))
    done = await asyncio.gather(*(_apply_in_slot(redis, items) for items in per_slot.values()))
    return sum(done)


async def _apply_in_slot(redis: aioredis.Redis, items: list[tuple[str, list[Command]]]) -> int:
    markers = [marker for marker, _ in items]
    touched = list(dict.fromkeys(k for _, cmds in items for c in cmds for k in keys_of(c)))
    payload = json.dumps([cmds for _, cmds in items], ensure_ascii=False)
    return int(
        await redis.eval(
            _APPLY, len(markers) + len(touched), *markers, *touched, APPLIED_TTL_SECONDS, payload
        )
    )


__all__ = [
    "REDIS_DOWN",
    "SLOT_IN_FLUX",
    "ClusterClient",
    "Command",
    "Group",
    "apply",
    "by_slot",
    "commands",
    "decode",
    "encode",
    "get_many",
    "is_cluster",
    "keys_of",
    "on_slot",
    "recorder",
    "slot_of",
    "split",
]
