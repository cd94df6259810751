"""Which message each streamed reply is being edited in, shared by every process (Redis).

Every process running a platform adapter follows the partials, and the outbox may hand
the final reply to any of them. One hash per reply, keyed by its ``in_reply_to``
(``Keys.streamed``), says which process streams it (the first to claim it), the
platform's message id once sent, and whether the final took over; each change is one Lua
call, so two processes never both stream a reply and no partial is edited in after the
final. A short lock (``Keys.streamed_edit``) is held during each partial's edit: the
final waits for it, so its edit lands last. The hash holds ids only, never text.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from core.keys import Keys

CLAIM_SECONDS = 30  # a claim whose first message never got an id lets the final send normally
RECORD_SECONDS = 24 * 3600  # a streamed message's id, for a final the outbox delivers late
FINAL_MARK_SECONDS = 600  # "the final came first": outlives any partial still on its way
EDIT_LOCK_MS = 15_000  # longer than one platform call may take

_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RECORD = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('HEXISTS', KEYS[1], 'final') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'message', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'message') == 0
   and redis.call('HEXISTS', KEYS[1], 'final') == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
"""
_BEGIN_EDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""
_TAKE_OVER = """
local message = redis.call('HGET', KEYS[1], 'message')
if message then
  redis.call('HSET', KEYS[1], 'final', '1')
  return {'message', message}
end
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], 'final') == 0 then
  return {'pending', ''}
end
redis.call('HSET', KEYS[1], 'final', '1')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return {'none', ''}
"""


class StreamRecords:
    """Which message each reply of one bot on one platform is streamed into (Redis)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, platform: str, bot_id: str) -> None:
        self.redis, self.keys, self.platform, self.bot_id = redis, keys, platform, bot_id
        self._claim = redis.register_script(_CLAIM)
        self._record = redis.register_script(_RECORD)
        self._release = redis.register_script(_RELEASE)
        self._begin_edit = redis.register_script(_BEGIN_EDIT)
        self._take_over = redis.register_script(_TAKE_OVER)

    def _key(self, in_reply_to: str) -> str:
        return self.keys.streamed(self.platform, self.bot_id, in_reply_to)

    def _lock(self, in_reply_to: str) -> str:
        return self.keys.streamed_edit(self.platform, self.bot_id, in_reply_to)

    async def claim(self, in_reply_to: str, owner: str) -> bool:
        """Be the one process that streams this reply (False: another is, or the final came)."""
        return bool(await self._claim(keys=[self._key(in_reply_to)], args=[owner, CLAIM_SECONDS]))

    async def record(self, in_reply_to: str, owner: str, message_id: str) -> bool:
        """Store the streamed message's id; False when the final took over meanwhile."""
        return bool(
            await self._record(keys=[self._key(in_reply_to)], args=[owner, message_id, RECORD_SECONDS])
        )

    async def release(self, in_reply_to: str, owner: str) -> None:
        """Give up a claim whose first message could not be sent (a later partial may retry)."""
        await self._release(keys=[self._key(in_reply_to)], args=[owner])

    async def begin_edit(self, in_reply_to: str) -> bool:
        """Take the edit lock unless the final took over; pair with :meth:`end_edit`."""
        keys = [self._key(in_reply_to), self._lock(in_reply_to)]
        return bool(await self._begin_edit(keys=keys, args=[EDIT_LOCK_MS]))

    async def end_edit(self, in_reply_to: str) -> None:
        await self.redis.delete(self._lock(in_reply_to))

    async def take_over(self, in_reply_to: str) -> tuple[str, str]:
        """For the final: ``("message", id)`` to edit, ``("none", "")`` to send normally
        (no partial edits happen from now on), ``("pending", "")`` while a first message
        is being sent."""
        state, message = await self._take_over(keys=[self._key(in_reply_to)], args=[FINAL_MARK_SECONDS])
        return str(state), str(message)

    async def editing(self, in_reply_to: str) -> bool:
        return bool(await self.redis.exists(self._lock(in_reply_to)))
