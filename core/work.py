"""One message on its way through the engine (``core.steps``): what was read, decided
and generated for it, from intake to commit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from core import router
from core.conversation import ConversationState
from core.messages import IncomingMessage, Route
from core.persona import Persona
from core.protocols import IntentPrediction, TokenStream
from core.ticket import Ticket

# A missing persona still gets a polite answer: the default fixed messages.
NO_PERSONA = Persona(bot_id="unknown", display_name="Assistant")
_UNDECIDED = router.Decision(Route.UNAVAILABLE, "not routed yet", "unavailable")

Entry = tuple[str, IncomingMessage]


@dataclass(slots=True)
class Work:
    """One message on its way through the engine."""

    entry_id: str
    message: IncomingMessage
    persona: Persona | None
    text: str = ""
    truncated: bool = False
    state: ConversationState = field(default_factory=ConversationState)
    prediction: IntentPrediction | None = None
    unavailable: str = ""
    decision: router.Decision = _UNDECIDED
    ticket: Ticket | None = None  # the conversation's latest ticket, if it ever had one
    stale_handoff: bool = False  # held by a ticket that no longer holds it: hand back
    # generation in progress: a stream of its own, or a row of a group's generate call
    stream: TokenStream | None = None
    written: asyncio.Future[list[str]] | None = None
    row: int = 0
    error: str = ""  # why the reply model could not write (a ChatbotError's line)

    @property
    def situation(self) -> router.Situation:
        return router.Situation(
            self.text, self.persona, self.state, self.prediction, self.unavailable, self.message
        )

    @property
    def persona_or_default(self) -> Persona:
        return self.persona or NO_PERSONA

    @property
    def entry(self) -> Entry:
        return self.entry_id, self.message


__all__ = ["NO_PERSONA", "Entry", "Work"]
