"""A bot's persona: who it is, how it talks, what it knows, how it routes.

Admins edit personas while the bot runs; the live copy sits in Redis and the engine
reads it for every batch, so a change reaches the very next message. Every saved
version is kept in a capped list for audit and rollback.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

import redis.asyncio as aioredis
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from core import cluster
from core.errors import ConfigError
from core.keys import Keys
from core.messages import PAYLOAD_BYTES, QuickReply

PERSONA_VERSIONS_KEPT = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationSettings(_Strict):
    """Sampling settings for the dialogue LM (transformers ``generate`` names)."""

    max_new_tokens: int = Field(default=160, ge=1, le=1024)
    temperature: float = Field(default=0.7, gt=0.0, le=5.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    top_k: int = Field(default=50, ge=0)
    repetition_penalty: float = Field(default=1.1, ge=1.0, le=3.0)
    do_sample: bool = True
    history_turns: int = Field(default=8, ge=0, le=200, description="recent turns put in the prompt")
    history_scope: Literal["topic", "all"] = Field(
        default="topic",
        description="'topic': of those turns, only the ones since the customer last asked about "
        "another intent; 'all': every one (core.prompt.scope_history)",
    )
    best_of: int = Field(
        default=1,
        ge=1,
        le=8,
        description="when sampling: replies written per message; the reply judge keeps the one "
        "most about the customer's intent (core.best_of)",
    )


# Answers to the small-talk intents of the default intent model (greeting, thanks, goodbye).
SMALL_TALK_ANSWERS = {
    "greeting": "Hello! How can I help you today?",
    "thanks": "You're welcome! Is there anything else I can help you with?",
    "goodbye": "Thanks for getting in touch. Have a great day!",
}


RouteName = Literal["generate", "canned", "escalate"]
Platform = Literal["web", "console", "telegram", "slack", "discord"]

# Hand a person the conversation when asked or when the customer complains; answer
# small talk with a fixed text; let the language model answer the rest.
_DEFAULT_ROUTES: dict[str, RouteName] = {
    "contact_human_agent": "escalate",
    "complaint": "escalate",
    "greeting": "canned",
    "thanks": "canned",
    "goodbye": "canned",
}
_ALL_PLATFORMS: tuple[Platform, ...] = ("web", "console", "telegram", "slack", "discord")


class RoutingRules(_Strict):
    """Which intents the bot answers, answers with a fixed text, or hands to a human
    (``core.router`` applies them)."""

    routes: dict[str, RouteName] = Field(default_factory=lambda: dict(_DEFAULT_ROUTES))
    canned: dict[str, str] = Field(default_factory=lambda: dict(SMALL_TALK_ANSWERS))
    default_route: RouteName = "generate"
    confidence_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    escalate_after_low_confidence: int = Field(default=3, ge=1, le=100)

    @field_validator("canned")
    @classmethod
    def _canned_not_blank(cls, value: dict[str, str]) -> dict[str, str]:
        for intent, text in value.items():
            if not text.strip():
                raise ValueError(f"canned answer for intent {intent!r} is empty")
        return value


class Messages(_Strict):
    """The fixed lines the bot says outside the model."""

    empty: str = "It looks like your message was empty. What can I help you with?"
    too_long: str = (
        "Your message was long, so I read the first {limit} characters; "
        "send the rest in another message if it matters."
    )
    rephrase: str = "Sorry, I'm not sure I understood. Could you rephrase that?"
    handoff: str = "I've passed this to our support team; a person will reply here."
    # The one acknowledgement while the team holds the conversation (once per ticket).
    handoff_waiting: str = (
        "Thanks, I've added that to your conversation; the person who picks it up will see it."
    )
    # While nobody has claimed the ticket, once per CHATBOT_TICKET_REMINDER_MINUTES.
    still_waiting: str = "You're still in our support queue; a person will reply here as soon as one is free."
    unavailable: str = "Sorry, I can't answer right now. Please try again in a moment."
    text_only: str = "I can only read text messages for now. Please type your question."
    # The answer to /help (Telegram, Discord, Slack, the console and the web chat).
    help: str = (
        "I answer questions about orders, deliveries, returns, refunds, payments and your account: "
        "ask in your own words. To talk to a person, send /human or just ask for one."
    )
    # Backpressure at intake (core/admission.py): sent at once, the models never see the message.
    slow_down: str = (
        "You're sending messages faster than I can read them. Please wait a moment and try again."
    )
    busy: str = "I'm very busy right now. Please send your message again in a few minutes."


class QuickReplyOption(_Strict):
    """A button: its label and what a tap sends, either ``text`` (the customer's words,
    classified like typed text; the label when empty) or an ``intent`` (routed at once)."""

    label: str = Field(min_length=1, max_length=40)
    text: str = ""
    intent: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _fits(self) -> QuickReplyOption:
        if self.text and self.intent:
            raise ValueError("give a quick reply a text or an intent, not both")
        if len(self.as_reply().payload.encode()) > PAYLOAD_BYTES:
            raise ValueError(
                f"quick reply {self.label!r} sends too much: text or intent at most {PAYLOAD_BYTES - 2} "
                "bytes (Telegram's limit for button data)"
            )
        return self

    def as_reply(self) -> QuickReply:
        return QuickReply(self.label, self.text.strip(), self.intent)

    @model_serializer(mode="wrap")
    def _without_blanks(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``{label, text}`` or ``{label, intent}``, as written (exports stay readable)."""
        return {k: v for k, v in handler(self).items() if v != "" or k == "label"}


Choices = Annotated[list[QuickReplyOption], Field(max_length=10)]


class QuickReplies(_Strict):
    """Buttons the bot puts under its answers, by what answers (``core.router``)."""

    greeting: Choices = Field(default_factory=list, description="under the greeting (/start, chat start)")
    help: Choices = Field(default_factory=list, description="under the /help text")
    rephrase: Choices = Field(default_factory=list, description="under every unsure (rephrase) reply")
    text_only: Choices = Field(default_factory=list, description="under the text-only answer to a file")
    unavailable: Choices = Field(default_factory=list, description="when a model could not answer")
    intents: dict[str, Choices] = Field(
        default_factory=dict, description="under the answer (canned or generated) to an intent"
    )

    def lists(self) -> dict[str, list[QuickReplyOption]]:
        """Every list of buttons, by where it is in the persona."""
        named = ("greeting", "help", "rephrase", "text_only", "unavailable")
        return {name: getattr(self, name) for name in named} | {
            f"intents.{intent}": options for intent, options in self.intents.items()
        }

    def offers(self, intent: str) -> bool:
        """Whether a button stands for ``intent`` (only those skip the classifier)."""
        return any(o.intent == intent for options in self.lists().values() for o in options)

    @model_validator(mode="after")
    def _distinct(self) -> QuickReplies:
        for where, options in self.lists().items():
            payloads = [o.as_reply().payload for o in options]
            if len(set(payloads)) != len(payloads):
                raise ValueError(f"quick_replies.{where}: two buttons send the same thing")
        return self


class ModelChoice(_Strict):
    """Which models under the models folder this bot uses (see ``chatbot models list``)."""

    intent: str = "intent-default"
    lm: str = "lm-default"


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class TelegramCredentials(_Strict):
    """Names of the environment variables with this bot's Telegram settings, never values."""

    token_env: EnvName | None = None
    webhook_url_env: EnvName | None = None
    webhook_secret_env: EnvName | None = None


class SlackCredentials(_Strict):
    bot_token_env: EnvName | None = None
    signing_secret_env: EnvName | None = None
    app_token_env: EnvName | None = None


class DiscordCredentials(_Strict):
    token_env: EnvName | None = None


class Credentials(_Strict):
    """Where each platform's secrets of one bot are (``bots.credentials`` reads them); a
    name left out means unset, except for the default bot, which falls back to the
    platform's usual variable (``TELEGRAM_BOT_TOKEN``, ...)."""

    telegram: TelegramCredentials = Field(default_factory=TelegramCredentials)
    slack: SlackCredentials = Field(default_factory=SlackCredentials)
    discord: DiscordCredentials = Field(default_factory=DiscordCredentials)


class Persona(_Strict):
    bot_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    display_name: str = Field(min_length=1, max_length=80)
    greeting: str = "Hi! How can I help you today?"
    style: str = Field(
        default="You are a friendly, concise customer-support assistant.",
        description="system text: tone and style, put at the top of every prompt",
    )
    facts: dict[str, str] = Field(
        default_factory=dict,
        description="values for the slot placeholders in the dialogue data, e.g. "
        "'Customer Support Phone Number': '+1 555 0100'",
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    routing: RoutingRules = Field(default_factory=RoutingRules)
    messages: Messages = Field(default_factory=Messages)
    quick_replies: QuickReplies = Field(default_factory=QuickReplies)
    models: ModelChoice = Field(default_factory=ModelChoice)
    platforms: list[Platform] = Field(default_factory=lambda: list(_ALL_PLATFORMS))
    group_replies: Literal["mentions", "all"] = Field(
        default="mentions", description="in group chats: answer only mentions/replies, or every message"
    )
    enabled: bool = Field(
        default=True, description="false: no platform serves the bot (`chatbot bots disable`)"
    )
    credentials: Credentials = Field(default_factory=Credentials)
    stream: Literal["off", "edit"] = Field(
        default="off",
        description="Telegram, Discord, Slack: 'edit' shows a generated reply as it is written, "
        "editing one message in place (the web chat always shows it as it is written)",
    )

    @field_validator("stream", mode="before")
    @classmethod
    def _stream_off_in_yaml(cls, value: object) -> object:
        """YAML 1.1 reads a bare ``off`` as false: ``stream: off`` means "off"."""
        return "off" if value is False else value


class PersonaStore:
    """The live personas in Redis, as JSON, with a version history."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def get(self, bot_id: str) -> Persona:
        raw = await self.redis.get(self.keys.persona(bot_id))
        if raw is None:
            raise ConfigError(f"no persona for bot {bot_id!r}; load one with `chatbot persona import FILE`")
        return Persona.model_validate_json(raw)

    async def get_many(self, bot_ids: list[str]) -> dict[str, Persona]:
        """Several personas in one round trip (the engine's per-batch read)."""
        ids = list(dict.fromkeys(bot_ids))
        values = await self.redis.mget([self.keys.persona(b) for b in ids]) if ids else []
        out: dict[str, Persona] = {}
        for bot_id, raw in zip(ids, values, strict=False):
            if raw is not None:
                out[bot_id] = Persona.model_validate_json(raw)
        return out

    async def bot_ids(self) -> list[str]:
        """Every bot with a live persona, sorted."""
        prefix = self.keys.persona("")
        found = {key[len(prefix) :] async for key in self.redis.scan_iter(match=prefix + "*", count=500)}
        return sorted(found)

    async def put(self, persona: Persona, *, author: str = "cli") -> int:
        """Save ``persona`` as the live copy; returns its new version number."""
        payload = persona.model_dump_json()
        record = json.dumps({"at": time.time(), "author": author, "persona": json.loads(payload)})
        key = self.keys.persona_versions(persona.bot_id)  # one slot with the persona (core.keys)
        async with cluster.on_slot(self.redis, key).pipeline(transaction=True) as pipe:
            pipe.set(self.keys.persona(persona.bot_id), payload)
            pipe.rpush(key, record)
            pipe.ltrim(key, -PERSONA_VERSIONS_KEPT, -1)
            pipe.llen(key)
            result = await pipe.execute()
        return int(result[-1])

    async def put_if_absent(self, persona: Persona) -> bool:
        """Seed a default persona without overwriting an admin's edits."""
        if await self.redis.exists(self.keys.persona(persona.bot_id)):
            return False
        await self.put(persona, author="default")
        return True

    async def versions(self, bot_id: str) -> list[dict[str, object]]:
        return [json.loads(r) for r in await self.redis.lrange(self.keys.persona_versions(bot_id), 0, -1)]
