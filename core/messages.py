"""The platform-agnostic message model that adapters and the engine exchange.

Both types travel through Redis Streams as one JSON field, so they must stay plain
data: strings, numbers and a flat ``meta`` dict of strings that an adapter uses to
deliver the reply where it belongs (a Slack thread, a Discord message to reply to).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

# Lone UTF-16 surrogates (from broken clients) cannot be encoded as UTF-8 for Redis.
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class Route(StrEnum):
    """What the engine did with a message."""

    GENERATE = "generate"  # the language model wrote the answer
    CANNED = "canned"  # a fixed answer the admin wrote
    ESCALATE = "escalate"  # handed to a human; the customer got the hand-off message
    HUMAN = "human"  # a human already owns the conversation; the bot only acknowledges
    REPHRASE = "rephrase"  # the classifier was unsure; the user is asked to rephrase
    PROMPT = "prompt"  # the message was empty or not text; the user is asked to type
    UNAVAILABLE = "unavailable"  # a model could not run; the user is asked to retry later
    PROACTIVE = "proactive"  # the bot writes first (`chatbot send`): an order update, a follow-up


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Who a history belongs to: one user in one chat of one platform, for one bot."""

    bot_id: str
    platform: str
    chat_id: str
    user_id: str

    def parts(self) -> tuple[str, str, str, str]:
        return (self.bot_id, self.platform, self.chat_id, self.user_id)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A customer's message as an adapter hands it to the engine."""

    bot_id: str
    platform: str
    chat_id: str
    user_id: str
    text: str
    display_name: str = ""
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.bot_id, self.platform, self.chat_id, self.user_id)

    def to_json(self) -> str:
        return _SURROGATES.sub("", json.dumps(asdict(self), ensure_ascii=False))

    @classmethod
    def from_json(cls, raw: str | bytes) -> IncomingMessage:
        return cls(**_known_fields(cls, json.loads(raw)))


@dataclass(frozen=True, slots=True)
class Reply:
    """The engine's answer to one incoming message."""

    bot_id: str
    platform: str
    chat_id: str
    user_id: str
    text: str
    route: Route
    intent: str = ""
    confidence: float = 0.0
    in_reply_to: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    reply_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.bot_id, self.platform, self.chat_id, self.user_id)

    @classmethod
    def to(cls, message: IncomingMessage, text: str, route: Route, **kwargs: Any) -> Reply:
        """A reply addressed to where ``message`` came from."""
        return cls(
            bot_id=message.bot_id,
            platform=message.platform,
            chat_id=message.chat_id,
            user_id=message.user_id,
            text=text,
            route=route,
            in_reply_to=message.message_id,
            meta=dict(message.meta),
            **kwargs,
        )

    def to_json(self) -> str:
        return _SURROGATES.sub("", json.dumps(asdict(self), ensure_ascii=False))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Reply:
        data = _known_fields(cls, json.loads(raw))
        data["route"] = Route(data["route"])
        return cls(**data)

    def to_api(self) -> dict[str, Any]:
        """The public JSON shape (web chat API, CLI export)."""
        return {
            "text": self.text,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "route": self.route.value,
            "reply_id": self.reply_id,
            "in_reply_to": self.in_reply_to,
        }


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Drop fields a newer producer added, so old consumers keep working."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
