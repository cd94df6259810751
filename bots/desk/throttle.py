"""Login rate limits, per account and per address, kept in Redis by the `limits` library
(a moving window, so a burst at a window's edge does not double the allowance)."""

from __future__ import annotations

import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import ConfigurationError

from bots.desk.accounts import desk_key
from core.connection import limits_storage
from core.errors import ConfigError
from core.keys import Keys


def parse_limit(value: str, setting: str) -> RateLimitItem:
    try:
        return parse(value)
    except (ValueError, ConfigurationError):
        raise ConfigError(f"invalid setting {setting}: {value!r} (write e.g. 5/minute)") from None


class LoginThrottle:
    def __init__(self, redis: aioredis.Redis, keys: Keys, per_account: str, per_address: str) -> None:
        storage = limits_storage(redis, desk_key(keys, "limits"))
        self.limiter = MovingWindowRateLimiter(storage)
        self.per_account = parse_limit(per_account, "CHATBOT_LOGIN_LIMIT_ACCOUNT")
        self.per_address = parse_limit(per_address, "CHATBOT_LOGIN_LIMIT_ADDRESS")

    async def allow(self, username: str, address: str) -> bool:
        """Count one sign-in attempt; False once either limit is spent."""
        by_account = await self.limiter.hit(self.per_account, "login-account", username)
        by_address = await self.limiter.hit(self.per_address, "login-address", address)
        return by_account and by_address

    def retry_after(self) -> int:
        """Seconds a refused caller should wait (the longer window)."""
        return max(self.per_account.get_expiry(), self.per_address.get_expiry())
