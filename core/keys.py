"""Every Redis key the framework writes, in one place.

Keys are namespaced (``chatbot`` by default) so several deployments, or a test run,
can share one server. Ids from platforms may contain ``:`` (or braces); they are
escaped so one user's key can never collide with another's.

Every key carries a Redis Cluster *hash tag* (the part in ``{...}``), which picks its
slot, so that the keys written together land in one slot (docs/scaling.md):

- ``{platform:user}``: everything about one user: each conversation's history, state,
  lease, in-flight set, idempotency records and ticket pointer, and the user's index,
  so a conversation's commit and ``history forget`` each touch one slot;
- ``{intake}``: the intake stream, its seen-event ids, failure counts and dead letters;
- ``{outbound:platform:bot}``: one outbound stream and the progress of its replies
  (``{partials:platform:bot}``: the stream of replies as they are written);
- ``{tickets}``, ``{personas}``, ``{desk}``: the support desk's tickets with their
  queues, the personas with their versions, the desk's accounts and sessions.

On a single server or behind Sentinel the tags change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.messages import ConversationKey

INTAKE_TAG = "intake"
TICKETS_TAG = "tickets"
PERSONAS_TAG = "personas"
DESK_TAG = "desk"


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (between the first ``{`` and the next
    ``}``), or the whole key when it has none, as Redis defines it."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def _unescape(part: str) -> str:
    return part.replace("%7D", "}").replace("%7B", "{").replace("%3A", ":").replace("%25", "%")


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = "chatbot"

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *(_escape(p) for p in parts)))

    def _tagged(self, family: str, tag: str, *rest: str) -> str:
        """``{ns}:{family}:{tag}:{rest...}`` with ``tag`` (already escaped) as the hash tag."""
        return ":".join((self.namespace, family, f"{{{tag}}}", *(_escape(p) for p in rest)))

    @staticmethod
    def user_tag(platform: str, user_id: str) -> str:
        """The hash tag of every key about one platform user."""
        return f"{_escape(platform)}:{_escape(user_id)}"

    def _conv(self, family: str, conv: ConversationKey) -> str:
        return self._tagged(family, self.user_tag(conv.platform, conv.user_id), conv.bot_id, conv.chat_id)

    # conversation state
    def history(self, conv: ConversationKey) -> str:
        return self._conv("history", conv)

    def low_confidence(self, conv: ConversationKey) -> str:
        return self._conv("lowconf", conv)

    def handoff(self, conv: ConversationKey) -> str:
        return self._conv("handoff", conv)

    def user_index(self, platform: str, user_id: str) -> str:
        """A set of every key that holds data about one platform user (for erasure)."""
        return self._tagged("user", self.user_tag(platform, user_id))

    # streams
    def intake(self) -> str:
        return self._tagged("stream", INTAKE_TAG)

    def streams(self) -> str:
        """SCAN pattern of every stream (intake, each outbound stream, any later one)."""
        return f"{self._k('stream')}:*"

    def outbound(self, platform: str, bot_id: str) -> str:
        """Replies of one bot on one platform: each bot has its own credentials."""
        return self._tagged("stream", self._outbound_tag(platform, bot_id))

    @staticmethod
    def _outbound_tag(platform: str, bot_id: str) -> str:
        return f"outbound:{_escape(platform)}:{_escape(bot_id)}"

    def partials(self, platform: str, bot_id: str) -> str:
        """Replies of one bot on one platform as they are written (``core.partials``), capped."""
        return self._tagged("stream", f"partials:{_escape(platform)}:{_escape(bot_id)}")

    def streamed(self, platform: str, bot_id: str, in_reply_to: str) -> str:
        """The message a reply is being streamed into by editing (``adapters.streaming``):
        a hash of who streams it, the platform's message id and whether the final took over."""
        return self._tagged("streamed", self._streamed_tag(platform, bot_id, in_reply_to))

    def streamed_edit(self, platform: str, bot_id: str, in_reply_to: str) -> str:
        """Held (with an expiry) while a streamed message is being edited."""
        return self._tagged("streamed-edit", self._streamed_tag(platform, bot_id, in_reply_to))

    @staticmethod
    def _streamed_tag(platform: str, bot_id: str, in_reply_to: str) -> str:
        """One slot for a streamed reply's record and its edit lock (used together in Lua)."""
        return ":".join(_escape(p) for p in ("streamed", platform, bot_id, in_reply_to))

    def dead_letters(self) -> str:
        """Intake entries that failed too often (``core.dead_letters``)."""
        return self._tagged("stream", INTAKE_TAG, "dead")

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
        per bot token), so two bots on one platform never shadow each other. In the
        intake stream's slot: ``Bus.submit`` claims it and adds the entry in one call."""
        return self._tagged("seen", INTAKE_TAG, platform, bot_id, event_id)

    def parts_sent(self, platform: str, bot_id: str, reply_id: str) -> str:
        """How many parts of a split reply the platform already accepted (a count, no
        text), in its outbound stream's slot."""
        return self._tagged("sent", self._outbound_tag(platform, bot_id), reply_id)

    def intake_limits(self) -> str:
        """Prefix of the per-user intake rate-limit windows (the ``limits`` library's keys)."""
        return self._k("limits", "intake")

    # exactly-once processing (core.leases)
    def done(self, conv: ConversationKey, message_id: str) -> str:
        """The idempotency record of an intake message the engine has committed. A
        platform's message id is unique only as one bot sees it, so the bot is part of it
        (the platform is in the user's tag)."""
        return self._tagged("done", self.user_tag(conv.platform, conv.user_id), conv.bot_id, message_id)

    def lease(self, conv: ConversationKey) -> str:
        """The worker answering a conversation now (a token, with an expiry)."""
        return self._conv("lease", conv)

    def inflight(self, conv: ConversationKey) -> str:
        """Intake entry ids of a conversation not yet committed, scored in stream order."""
        return self._conv("inflight", conv)

    def intake_failures(self) -> str:
        """Failed attempts per intake entry id (a hash), for poison entries."""
        return self._tagged("intake-failures", INTAKE_TAG)

    def applied(self, key: str, change_id: str) -> str:
        """Marks a follow-up of a cross-slot change as done, in the slot of ``key``
        (``core.cluster``): a retried follow-up is applied once."""
        return self._tagged("applied", hash_tag(key), change_id)

    # personas
    def persona(self, bot_id: str) -> str:
        return self._tagged("persona", PERSONAS_TAG, bot_id)

    def persona_versions(self, bot_id: str) -> str:
        return self._tagged("persona-versions", PERSONAS_TAG, bot_id)

    # tickets (hand-offs to the support team)
    def ticket(self, ticket_id: str) -> str:
        return self._tagged("ticket", TICKETS_TAG, ticket_id)

    def ticket_audit(self, ticket_id: str) -> str:
        return self._tagged("ticket-audit", TICKETS_TAG, ticket_id)

    def tickets(self, status: str) -> str:
        """Ticket ids of one status (or ``all``), scored by their newest activity."""
        return self._tagged("tickets", TICKETS_TAG, status)

    def ticket_reminders(self) -> str:
        """Open ticket ids scored by when the customer is next told "still waiting"."""
        return self._tagged("tickets", TICKETS_TAG, "reminders")

    def ticket_followups(self) -> str:
        """Cluster mode: the other-slot writes of ticket changes not yet applied everywhere."""
        return self._tagged("ticket-followups", TICKETS_TAG)

    def conversation_ticket(self, conv: ConversationKey) -> str:
        """The conversation's latest ticket id (a new escalation may reopen it)."""
        return self._conv("conv-ticket", conv)

    def ticket_events(self) -> str:
        """The pub/sub channel of ticket events (live desk pages)."""
        return self._k("ticket-events")

    # the support desk's accounts, tokens, sessions and audit log (bots/desk)
    def desk(self, *parts: str) -> str:
        return self._tagged("desk", DESK_TAG, *parts)

    def user_pattern(self, platform: str, user_id: str) -> str:
        """SCAN pattern of every key with one user's hash tag (idempotency records and
        follow-up markers included, which the user's index does not list)."""
        tag = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.user_tag(platform, user_id))
        return f"{self.namespace}:*:{{{tag}}}*"

    # proactive messages (core.proactive)
    def proactive_request(self, bot_id: str, request_id: str) -> str:
        """The reply id a caller's request id was sent as: a retried request sends nothing new."""
        return self._k("proactive", bot_id, request_id)

    def delivery_outcome(self, reply_id: str) -> str:
        """What became of a proactive message: delivered, or the platform's refusal."""
        return self._k("outcome", reply_id)

    def conversation_of(self, history_key: str) -> ConversationKey | None:
        """The conversation a :meth:`history` key belongs to (None for any other key)."""
        prefix = self._k("history") + ":{"
        tag, _, rest = history_key.removeprefix(prefix).partition("}:")
        if not history_key.startswith(prefix) or not rest:
            return None
        parts = [_unescape(p) for p in (*tag.split(":"), *rest.split(":"))]
        if len(parts) != 4:
            return None
        platform, user_id, bot_id, chat_id = parts
        conv = ConversationKey(bot_id, platform, chat_id, user_id)
        return conv if self.history(conv) == history_key else None

    def pattern(self) -> str:
        return f"{self.namespace}:*"
