"""The ticket record: what a conversation handed to the support team looks like.

The store that changes tickets (claims, replies, audit, reminders) is
:mod:`core.tickets`; this module holds only the values it reads and writes, so the
desk, the CLI and the engine can share them without the store's machinery.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from core.messages import ConversationKey

BOT = "bot"  # the actor of every change the engine makes

# Which rule handed the conversation over.
REASON_INTENT = "intent"  # the persona routes the message's intent to a human
REASON_LOW_CONFIDENCE = "low_confidence"  # too many unsure turns in a row
REASON_ASKED = "asked"  # the customer asked for a person
REASONS = (REASON_INTENT, REASON_LOW_CONFIDENCE, REASON_ASKED)
ASK_FOR_PERSON = "contact_human_agent"  # the intent of "I want to talk to a person"


class TicketStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class TicketConfig:
    """Timings of the desk, in seconds."""

    reopen_window_s: float = 3600.0  # escalating again this soon after resolve reopens the ticket
    claim_timeout_s: float = 900.0  # a claim whose agent is idle this long may be taken over
    reminder_interval_s: float = 300.0  # unclaimed this long: tell the customer "still waiting"
    ttl_seconds: int = 30 * 24 * 3600  # how long a resolved ticket and its audit are kept

    def __post_init__(self) -> None:
        for name in ("reopen_window_s", "claim_timeout_s", "reminder_interval_s", "ttl_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ticket setting {name} must be positive")


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    bot_id: str
    platform: str
    chat_id: str
    user_id: str
    display_name: str
    reason: str  # one of REASONS
    detail: str  # one human line, e.g. "3 unsure turns in a row"
    intent: str
    confidence: float
    status: TicketStatus
    assignee: str  # "" when nobody holds it
    created_at: float
    updated_at: float  # newest activity (the queue's sort key)
    claimed_at: float | None
    resolved_at: float | None
    acknowledged: bool = False  # the customer got the one "we have your message" line
    meta: dict[str, str] = field(default_factory=dict)  # delivery details of the latest message

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.bot_id, self.platform, self.chat_id, self.user_id)

    @property
    def held(self) -> bool:
        """The team has the conversation (the bot stays quiet)."""
        return self.status is not TicketStatus.RESOLVED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("meta")
        data["status"] = self.status.value
        return data


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    actor: str  # an agent's username, or "bot"
    action: str  # opened, reopened, claimed, takeover, released, replied, resolved, reminded
    detail: str


@dataclass(frozen=True, slots=True)
class TicketEvent:
    ticket_id: str
    kind: str  # opened reopened message claimed released replied resolved reminded
    at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> TicketEvent:
        data = json.loads(raw)
        return cls(ticket_id=str(data["ticket_id"]), kind=str(data["kind"]), at=float(data["at"]))


def ticket_from_hash(data: dict[str, str]) -> Ticket:
    """A :class:`Ticket` from its Redis hash."""

    def when(name: str) -> float | None:
        return float(data[name]) if data.get(name) else None

    return Ticket(
        id=data["id"],
        bot_id=data["bot_id"],
        platform=data["platform"],
        chat_id=data["chat_id"],
        user_id=data["user_id"],
        display_name=data.get("display_name", ""),
        reason=data.get("reason", ""),
        detail=data.get("detail", ""),
        intent=data.get("intent", ""),
        confidence=float(data.get("confidence") or 0.0),
        status=TicketStatus(data["status"]),
        assignee=data.get("assignee", ""),
        created_at=float(data["created_at"]),
        updated_at=float(data.get("updated_at") or data["created_at"]),
        claimed_at=when("claimed_at"),
        resolved_at=when("resolved_at"),
        acknowledged=bool(data.get("acknowledged")),
        meta=json.loads(data.get("meta") or "{}"),
    )


__all__ = [
    "ASK_FOR_PERSON",
    "BOT",
    "REASONS",
    "REASON_ASKED",
    "REASON_INTENT",
    "REASON_LOW_CONFIDENCE",
    "AuditEntry",
    "Ticket",
    "TicketConfig",
    "TicketEvent",
    "TicketStatus",
    "ticket_from_hash",
]
