"""A conversation's state: its recent turns, whether a human holds it, its unsure streak.

The engine reads the state of every conversation in a wave with one pipeline
(:meth:`Conversations.load`) and writes the changes inside its commit transaction with
the ``queue_*`` writers, so a turn, its state and its reply are stored together or not
at all. The store owns these Redis keys:

    {ns}:history:{bot}:{platform}:{chat}:{user}   LIST of turns (through core.history)
    {ns}:handoff:{bot}:{platform}:{chat}:{user}   the ticket id a human holds it by
    {ns}:lowconf:{bot}:{platform}:{chat}:{user}   unsure turns in a row

Each is listed in the user's index set, so erasing a user erases them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What the router and the reply model need to know about a conversation."""

    history: tuple[Turn, ...] = ()  # the recent window, oldest first
    handed_off: bool = False  # a human from the support team holds the conversation
    unsure_streak: int = 0  # unsure turns in a row just before this message
    acknowledged: bool = False  # held, and the customer got the one acknowledgement already


class Conversations:
    """Loads conversation state per wave and queues its updates into a transaction."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, history: History) -> None:
        self.redis = redis
        self.keys = keys
        self.history = history

    @property
    def ttl_seconds(self) -> int:
        """State lives as long as the history it belongs to."""
        return self.history.ttl_seconds

    async def load(self, wanted: Sequence[tuple[ConversationKey, int]]) -> list[ConversationState]:
        """The state of each ``(conversation, history window)`` in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for conv, window in wanted:
                pipe.lrange(self.keys.history(conv), -max(1, window), -1)
                pipe.exists(self.keys.handoff(conv))
                pipe.get(self.keys.low_confidence(conv))
            results = await pipe.execute()
        states = []
        for i, (_conv, window) in enumerate(wanted):
            raw_turns, handoff, streak = results[3 * i : 3 * i + 3]
            turns = tuple(Turn.from_json(r) for r in raw_turns)[-window:] if window > 0 else ()
            states.append(ConversationState(turns, bool(handoff), int(streak or 0)))
        return states

    def queue_turns(self, pipe: Any, conv: ConversationKey, turns: Sequence[Turn]) -> None:
        """Append ``turns`` to the conversation's history (inside ``pipe``)."""
        self.history.queue_append(pipe, conv, turns)

    def queue_unsure_streak(self, pipe: Any, conv: ConversationKey, streak: int) -> None:
        """Store the unsure-turn streak; zero removes the key."""
        key = self.keys.low_confidence(conv)
        if streak > 0:
            pipe.set(key, streak, ex=self.ttl_seconds)
            pipe.sadd(self.keys.user_index(conv.platform, conv.user_id), key)
        else:
            pipe.delete(key)

    def queue_hand_off(self, pipe: Any, conv: ConversationKey, held_by: str) -> None:
        """Mark the conversation as held by a human (``held_by``: the ticket id)."""
        key = self.keys.handoff(conv)
        pipe.set(key, held_by, ex=self.ttl_seconds)
        pipe.sadd(self.keys.user_index(conv.platform, conv.user_id), key)

    def queue_hand_back(self, pipe: Any, conv: ConversationKey) -> None:
        """Give the conversation back to the bot."""
        pipe.delete(self.keys.handoff(conv))


__all__ = ["ConversationState", "Conversations"]
