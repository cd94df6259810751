"""Every Redis key the framework writes, in one place.

Keys are namespaced (``chatbot`` by default) so several deployments, or a test run,
can share one server. Ids from platforms may contain ``:``; they are escaped so one
user's key can never collide with another's.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.messages import ConversationKey


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = "chatbot"

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *(_escape(p) for p in parts)))

    # conversation state
    def history(self, conv: ConversationKey) -> str:
        return self._k("history", *conv.parts())

    def low_confidence(self, conv: ConversationKey) -> str:
        return self._k("lowconf", *conv.parts())

    def handoff(self, conv: ConversationKey) -> str:
        return self._k("handoff", *conv.parts())

    def user_index(self, platform: str, user_id: str) -> str:
        """A set of every key that holds data about one platform user (for erasure)."""
        return self._k("user", platform, user_id)

    # streams
    def intake(self) -> str:
        return self._k("stream", "intake")

    def streams(self) -> str:
        """SCAN pattern of every stream (intake, each outbound stream, any later one)."""
        return f"{self._k('stream')}:*"

    def outbound(self, platform: str, bot_id: str) -> str:
        """Replies of one bot on one platform: each bot has its own credentials."""
        return self._k("stream", "outbound", platform, bot_id)

    def partials(self, platform: str, bot_id: str) -> str:
        """Replies of one bot on one platform as they are written (``core.partials``), capped."""
        return self._k("stream", "partials", platform, bot_id)

    def dead_letters(self) -> str:
        """Intake entries that failed too often (``core.dead_letters``)."""
        return self._k("stream", "dead")

    def forget_channel(self) -> str:
        """Pub/sub channel on which ``history forget`` names a forgotten user, so engine
        processes drop what they hold in memory about them (cached prompt prefixes)."""
        return self._k("forgotten")

    def reply_channel(self, instance: str) -> str:
        """Pub/sub channel of one web-chat or console process: replies another process
        read from the outbound stream are forwarded to the process holding the request."""
        return self._k("replies", instance)

    def seen(self, platform: str, bot_id: str, event_id: str) -> str:
        """A taken platform event. Event ids are per bot (Telegram's update_id counts
        per bot token), so two bots on one platform never shadow each other."""
        return self._k("seen", platform, bot_id, event_id)

    def parts_sent(self, reply_id: str) -> str:
        """How many parts of a split reply the platform already accepted (a count, no text)."""
        return self._k("sent", reply_id)

    def intake_limits(self) -> str:
        """Prefix of the per-user intake rate-limit windows (the ``limits`` library's keys)."""
        return self._k("limits", "intake")

    # exactly-once processing (core.leases)
    def done(self, message_id: str) -> str:
        """The idempotency record of an intake message the engine has committed."""
        return self._k("done", message_id)

    def lease(self, conv: ConversationKey) -> str:
        """The worker answering a conversation now (a token, with an expiry)."""
        return self._k("lease", *conv.parts())

    def inflight(self, conv: ConversationKey) -> str:
        """Intake entry ids of a conversation not yet committed, scored in stream order."""
        return self._k("inflight", *conv.parts())

    def intake_failures(self) -> str:
        """Failed attempts per intake entry id (a hash), for poison entries."""
        return self._k("intake-failures")

    # personas
    def persona(self, bot_id: str) -> str:
        return self._k("persona", bot_id)

    def persona_versions(self, bot_id: str) -> str:
        return self._k("persona-versions", bot_id)

    # tickets (hand-offs to the support team)
    def ticket(self, ticket_id: str) -> str:
        return self._k("ticket", ticket_id)

    def ticket_audit(self, ticket_id: str) -> str:
        return self._k("ticket-audit", ticket_id)

    def tickets(self, status: str) -> str:
        """Ticket ids of one status (or ``all``), scored by their newest activity."""
        return self._k("tickets", status)

    def ticket_reminders(self) -> str:
        """Open ticket ids scored by when the customer is next told "still waiting"."""
        return self._k("tickets", "reminders")

    def conversation_ticket(self, conv: ConversationKey) -> str:
        """The conversation's latest ticket id (a new escalation may reopen it)."""
        return self._k("conv-ticket", *conv.parts())

    def ticket_events(self) -> str:
        """The pub/sub channel of ticket events (live desk pages)."""
        return self._k("ticket-events")

    def pattern(self) -> str:
        return f"{self.namespace}:*"
