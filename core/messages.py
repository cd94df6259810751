"""The platform-agnostic message model that adapters and the engine exchange.

Both types travel through Redis Streams as one JSON field, so they must stay plain
data: strings, numbers, a flat ``meta`` dict of strings that an adapter uses to
deliver the reply where it belongs (a Slack thread, a Discord message to reply to),
and lists of small records: a message's attachments, a reply's quick replies. A
consumer older than a field ignores it (``_known_fields``).
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


# The platform commands the router knows (``/start``, ``/help``, ``/human``).
COMMANDS = ("start", "help", "human")
# A quick reply's platform payload (Telegram's callback_data allows 64 bytes, the least of
# the platforms): "t:" + the text it sends, or "i:" + the intent it stands for.
PAYLOAD_BYTES = 64


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
class Attachment:
    """A photo, file, voice note... the customer sent: kept in history for the support
    team (the models read text only). ``url`` only where the platform gives a link an
    agent can open; Telegram's file links hold the bot token, so there it stays empty."""

    kind: str  # photo, document, voice, audio, video, sticker, ...
    size: int = 0  # bytes; 0 when the platform did not say
    file_id: str = ""  # the platform's id for the file
    url: str = ""
    name: str = ""  # file name, where there is one
    mime: str = ""

    def describe(self) -> str:
        """One line for people: kind, name, size, the platform's file id."""
        size = f"{self.size / 1024:.1f} KB" if self.size else ""
        parts = [self.kind, self.name, size, f"file id {self.file_id}" if self.file_id else ""]
        return ", ".join(p for p in parts if p)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attachment:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True, slots=True)
class QuickReply:
    """A button under a reply: its label, and the text or the intent a tap sends."""

    label: str
    text: str = ""  # what a tap sends as the customer's words ("" = the label)
    intent: str = ""  # or: the intent it stands for (the classifier is skipped)

    @property
    def sends(self) -> str:
        """The customer's words a tap stands for (stored in history as what they chose)."""
        return self.text or self.label

    @property
    def payload(self) -> str:
        """What the platform carries back on a tap (at most ``PAYLOAD_BYTES``)."""
        return f"i:{self.intent}" if self.intent else f"t:{self.text or self.label}"

    def to_api(self) -> dict[str, str]:
        """The web chat's shape: what to show, and the ``choice`` a click sends back."""
        return {"label": self.label, "choice": self.payload}

    @classmethod
    def from_payload(cls, payload: str, label: str) -> QuickReply | None:
        """The quick reply a tap on the button ``label`` chose; None when ``payload`` is
        not one of ours."""
        kind, _, value = payload.partition(":")
        if not value or kind not in ("t", "i"):
            return None
        return cls(
            label=label or value, text=value if kind == "t" else "", intent=value if kind == "i" else ""
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuickReply:
        return cls(**_known_fields(cls, data))


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
    command: str = ""  # one of COMMANDS: the router answers it, not the models
    intent: str = ""  # a tapped quick reply that stands for an intent: no classifier
    attachments: tuple[Attachment, ...] = ()

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.bot_id, self.platform, self.chat_id, self.user_id)

    def to_json(self) -> str:
        return _SURROGATES.sub("", json.dumps(asdict(self), ensure_ascii=False))

    @classmethod
    def from_json(cls, raw: str | bytes) -> IncomingMessage:
        data = _known_fields(cls, json.loads(raw))
        data["attachments"] = tuple(Attachment.from_dict(a) for a in data.get("attachments") or ())
        return cls(**data)


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
    quick_replies: tuple[QuickReply, ...] = ()  # buttons under the reply (its last part)

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
        data["quick_replies"] = tuple(QuickReply.from_dict(q) for q in data.get("quick_replies") or ())
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
            "quick_replies": [q.to_api() for q in self.quick_replies],
        }


def parse_command(text: str) -> tuple[str, str]:
    """``("help", "")`` for "/help", ``("start", "PAYLOAD")`` for "/start PAYLOAD" (a
    Telegram deep link), ``("", "")`` for anything else; "/help@shop_bot" (a command
    in a Telegram group) counts as "/help"."""
    head, _, rest = text.strip().partition(" ")
    name = head[1:].partition("@")[0].lower() if head.startswith("/") else ""
    return (name, rest.strip()) if name in COMMANDS else ("", "")


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Drop fields a newer producer added, so old consumers keep working."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
