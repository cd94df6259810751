"""Desk accounts: who may work tickets (``agent``) and who also runs the bots (``admin``).

An account is a Redis hash with its role, an argon2 password hash and a disabled flag.
API tokens are random strings shown once; only their SHA-256 is stored, mapped to the
account, so a leaked database holds no usable token. Hashing and verifying run in a
worker thread: argon2 is deliberately slow and must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core import cluster
from core.errors import ConfigError
from core.keys import Keys

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


class Role(StrEnum):
    AGENT = "agent"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: Role
    disabled: bool
    created_at: float

    def to_dict(self) -> dict[str, object]:
        return {
            "username": self.username,
            "role": self.role.value,
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


def desk_key(keys: Keys, *parts: str) -> str:
    """Desk keys live under the deployment's namespace, all in one Redis Cluster slot
    (``Keys.desk``), so each transaction below keeps to one."""
    return keys.desk(*parts)


def check_username(name: str) -> str:
    if not USERNAME.match(name):
        raise ConfigError(
            f"invalid username {name[:40]!r}: 1-32 characters of a-z 0-9 _ . - "
            "(lowercase, starting with a letter or digit)"
        )
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ConfigError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Accounts:
    def __init__(self, redis: aioredis.Redis, keys: Keys, hasher: PasswordHasher | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.hasher = hasher or PasswordHasher()

    def _key(self, username: str) -> str:
        return desk_key(self.keys, "account", username)

    async def create(self, username: str, role: Role, password: str) -> Account:
        check_username(username)
        digest = await asyncio.to_thread(self.hasher.hash, check_password(password))
        now = time.time()
        # The set membership is the lock: of two creators of one name, exactly one adds it.
        if not await self.redis.sadd(desk_key(self.keys, "accounts"), username):
            raise ConfigError(f"account {username!r} already exists; use `chatbot admin reset-password`")
        await self.redis.hset(
            self._key(username),
            mapping={"role": role.value, "hash": digest, "disabled": "0", "created_at": str(now)},
        )
        return Account(username, role, False, now)

    async def get(self, username: str) -> Account | None:
        data = await self.redis.hgetall(self._key(username)) if USERNAME.match(username) else {}
        if not data:
            return None
        return Account(
            username, Role(str(data["role"])), data.get("disabled") == "1", float(data["created_at"])
        )

    async def require(self, username: str) -> Account:
        account = await self.get(username)
        if account is None:
            raise ConfigError(f"no account {username[:40]!r}; see `chatbot admin create-user`")
        return account

    async def all(self) -> list[Account]:
        names = sorted(await self.redis.smembers(desk_key(self.keys, "accounts")))
        found = [await self.get(str(n)) for n in names]
        return [a for a in found if a is not None]

    async def verify(self, username: str, password: str) -> Account | None:
        """The account when the password matches and it is enabled, else None."""
        digest = await self.redis.hget(self._key(username), "hash") if USERNAME.match(username) else None
        if digest is None:
            # Same work for an unknown name, so timing does not reveal which names exist.
            await asyncio.to_thread(_burn, self.hasher, password)
            return None
        try:
            await asyncio.to_thread(self.hasher.verify, digest, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return None
        account = await self.get(username)
        return account if account is not None and not account.disabled else None

    async def set_password(self, username: str, password: str) -> None:
        await self.require(username)
        digest = await asyncio.to_thread(self.hasher.hash, check_password(password))
        await self.redis.hset(self._key(username), "hash", digest)

    async def set_disabled(self, username: str, disabled: bool) -> Account:
        await self.require(username)
        await self.redis.hset(self._key(username), "disabled", "1" if disabled else "0")
        if disabled:  # its tokens stop working at once; sessions check the flag per request
            for digest in await self.redis.smembers(desk_key(self.keys, "tokens-of", username)):
                await self.redis.delete(desk_key(self.keys, "token", str(digest)))
        return await self.require(username)

    async def create_token(self, username: str) -> str:
        """A new API token for ``username``, returned once; only its hash is kept."""
        account = await self.require(username)
        if account.disabled:
            raise ConfigError(f"account {username!r} is disabled")
        token = "cbt_" + secrets.token_urlsafe(32)
        digest = token_digest(token)
        async with cluster.on_slot(self.redis, self._key(username)).pipeline(transaction=True) as pipe:
            pipe.set(desk_key(self.keys, "token", digest), username)
            pipe.sadd(desk_key(self.keys, "tokens-of", username), digest)
            await pipe.execute()
        return token

    async def token_owner(self, token: str) -> Account | None:
        username = await self.redis.get(desk_key(self.keys, "token", token_digest(token)))
        account = await self.get(str(username)) if username else None
        return account if account is not None and not account.disabled else None


def _burn(hasher: PasswordHasher, password: str) -> None:
    hasher.hash(password[:MAX_PASSWORD] or "x")
