"""Proactive messages: the bot writes first to a customer it has talked to before.

An order update or a follow-up goes where the customer last talked to the bot: the
conversation must exist (the user index of ``core.history`` lists it), so a bot never
opens a chat with a stranger, which is also what the platforms allow (Telegram: only
users who started the bot; Discord: a DM needs a shared server; Slack: members of the
workspace). The message is queued on the bot's outbound stream in one transaction with
its history turn (in a Redis Cluster they are in two slots: the reply first, then the
turn), so the adapter delivers it exactly like a reply (retries, 429s, split
parts sent once) and the bot sees it in the conversation's history afterwards.

The delivery loop records what became of it (``record_outcome``): delivered, or the
platform's refusal in one line (blocked by the user, no shared server), so a caller
can wait for the answer instead of guessing. A caller's request id makes a retried
request send nothing new.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from core import cluster
from core.bus import DELIVERY_GROUP, Bus
from core.errors import BotUnavailable, ConversationNotFound
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey, Reply, Route
from core.persona import PersonaStore

PROACTIVE = "proactive"  # Reply.meta key: "1" on a proactive message (the outbox records its outcome)
SENDER = "sender"  # Reply.meta key: who sent it (an account, "cli")
RECORD_TTL_S = 24 * 3600  # request ids and outcomes are kept a day
LIVE_IDLE_MS = 5_000  # an outbox blocks on its read for half a second: older is not running
REACHABLE = ("web", "telegram", "slack", "discord")  # the console reaches only who is typing


@dataclass(frozen=True, slots=True)
class Sent:
    reply_id: str
    conversation: ConversationKey
    repeated: bool = False  # the request id was seen: nothing new was sent


def is_direct(conv: ConversationKey) -> bool:
    """A one-to-one chat with the bot, where the platform's ids say so: Telegram's private
    chat and the web chat share the user's id; Slack's DM channels start with D. A
    Discord DM channel id looks like any other channel's, so Discord says nothing here."""
    if conv.platform == "slack":
        return conv.chat_id.startswith("D")
    return conv.platform != "discord" and conv.chat_id == conv.user_id


class Proactive:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, bus: Bus, history: History, personas: PersonaStore
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.bus = bus
        self.history = history
        self.personas = personas

    async def check_bot(self, bot_id: str, platform: str) -> None:
        """BotUnavailable unless the bot exists, is enabled and lists ``platform``."""
        persona = (await self.personas.get_many([bot_id])).get(bot_id)
        if persona is None:
            raise BotUnavailable(f"unknown bot {bot_id!r} (see `chatbot bots list`)")
        if not persona.enabled:
            raise BotUnavailable(f"bot {bot_id!r} is disabled (`chatbot bots enable {bot_id}`)")
        if platform not in persona.platforms:
            raise BotUnavailable(f"bot {bot_id!r} does not serve {platform} (its persona's `platforms`)")

    async def conversations(self, bot_id: str, platform: str, user_id: str) -> list[ConversationKey]:
        """The bot's stored conversations with this user on this platform."""
        convs = [self.keys.conversation_of(k) for k in await self.history.conversations_of(platform, user_id)]
        return [c for c in convs if c is not None and c.bot_id == bot_id]

    def choose(self, convs: list[ConversationKey], chat_id: str | None) -> ConversationKey:
        """The named chat, else the direct one, else the only one; several group chats
        and no name is one line asking which (a message meant for one person should not
        land in a group by a guess)."""
        if chat_id is not None:
            found = [c for c in convs if c.chat_id == chat_id]
            if not found:
                raise ConversationNotFound(f"no conversation in chat {chat_id!r} with that user")
            return found[0]
        direct = [c for c in convs if is_direct(c)]
        if direct or len(convs) == 1:
            return (direct or convs)[0]
        chats = ", ".join(sorted(c.chat_id for c in convs))
        raise ConversationNotFound(
            f"the user talked to the bot in several chats ({chats}); name one with --chat"
        )

    async def send(
        self,
        bot_id: str,
        platform: str,
        user_id: str,
        text: str,
        *,
        chat_id: str | None = None,
        sender: str = "",
        request_id: str | None = None,
        max_chars: int = 4000,
    ) -> Sent:
        """Queue ``text`` to the user; ConversationNotFound, BotUnavailable or ValueError in
        one line when it cannot go."""
        text = text.strip()
        if not text:
            raise ValueError("the message is empty")
        if len(text) > max_chars:
            raise ValueError(f"the message has {len(text)} characters; the limit is {max_chars}")
        if platform not in REACHABLE:
            raise BotUnavailable(
                f"{platform} cannot take proactive messages (use one of {', '.join(REACHABLE)})"
            )
        await self.check_bot(bot_id, platform)
        convs = await self.conversations(bot_id, platform, user_id)
        if not convs:
            raise ConversationNotFound(
                f"bot {bot_id!r} has no conversation with {platform} user {user_id!r}; it can only "
                "write to customers who wrote to it first (and whose history has not expired)"
            )
        conv = self.choose(convs, chat_id)
        stream = self.keys.outbound(platform, bot_id)
        if not await self.bus.live_consumers(stream, DELIVERY_GROUP, LIVE_IDLE_MS):
            raise BotUnavailable(
                f"no running process delivers {platform} messages of bot {bot_id!r} now "
                "(start `chatbot run`, and check `chatbot bots show`); nothing was sent"
            )
        now = time.time()
        meta = {PROACTIVE: "1", SENDER: sender}
        reply = Reply(
            bot_id, platform, conv.chat_id, user_id, text, Route.PROACTIVE, meta=meta, timestamp=now
        )
        if request_id:  # claimed before sending: of two requests at once, one sends
            claim = self.keys.proactive_request(bot_id, request_id)
            if not await self.redis.set(claim, reply.reply_id, ex=RECORD_TTL_S, nx=True):
                return Sent(str(await self.redis.get(claim) or ""), conv, repeated=True)
        turn = Turn(
            role="bot", text=text, timestamp=now, route=Route.PROACTIVE.value, message_id=reply.reply_id
        )
        try:
            if cluster.is_cluster(self.redis):  # two slots: the reply is queued first, then history
                await self.bus.publish_reply(reply)
                home = cluster.on_slot(self.redis, self.keys.history(conv))
                async with home.pipeline(transaction=True) as pipe:
                    self.history.queue_append(pipe, conv, [turn])
                    await pipe.execute()
            else:
                async with self.redis.pipeline(transaction=True) as pipe:
                    self.history.queue_append(pipe, conv, [turn])
                    self.bus.queue_reply(pipe, reply)
                    await pipe.execute()
        except Exception:  # not sent: a retry of the request must send it
            if request_id:
                with contextlib.suppress(Exception):
                    await self.redis.delete(self.keys.proactive_request(bot_id, request_id))
            raise
        return Sent(reply.reply_id, conv)

    async def outcome(self, reply_id: str) -> dict[str, str] | None:
        """``{"status": "delivered"|"refused", "detail": ...}`` once the adapter is done."""
        raw = await self.redis.get(self.keys.delivery_outcome(reply_id))
        return json.loads(raw) if raw else None


async def record_outcome(redis: aioredis.Redis, keys: Keys, reply: Reply, refused: str | None) -> None:
    """For the delivery loop: what became of a proactive message (a no-op for others)."""
    if reply.meta.get(PROACTIVE) != "1":
        return
    record = {
        "status": "refused" if refused else "delivered",
        "detail": refused or "",
        "at": str(time.time()),
    }
    await redis.set(keys.delivery_outcome(reply.reply_id), json.dumps(record), ex=RECORD_TTL_S)
