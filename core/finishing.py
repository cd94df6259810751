"""The last step before a reply leaves the engine: slots filled, facts guarded.

Every reply's text is the router's choice (the model's reply, a canned answer or one of
the persona's fixed messages) with its ``{{slots}}`` filled from the persona's facts
(``core.slots``). A model reply then goes through the fact guard (``core.facts``): a
number, amount, phone number, e-mail address or link that neither the customer (nor an
agent) wrote in the conversation's recent turns nor the persona's facts hold is
replaced with a phrase for it, and each replacement is counted in
``chatbot_facts_replaced_total{kind}``.

A reply that loses its point that way (little but replaced phrases left, e.g. the model
wrote only "370795561790") is answered with the persona's ``rephrase`` message instead,
on the ``rephrase`` route, counted in ``chatbot_replies_withdrawn_total``. It is not
regenerated: a greedy model would write the same reply again, a sampling one needs a
second model call on the engine's hot path for a case the guard sees in well under one
reply in a hundred (docs/reply-quality.md), and "could you rephrase that" is the
bot's honest "I don't know" answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from core import router
from core.facts import guard_reply
from core.history import Turn
from core.metrics import FACTS_REPLACED, REPLIES_WITHDRAWN
from core.persona import Persona
from core.slots import fill_slots

# Turns whose words the bot may repeat: the customer's and the support team's, never
# the bot's own (a bot turn holds only what the guard already let through).
_SAID_BY = frozenset({"user", "agent"})


def finish_reply(
    decision: router.Decision, persona: Persona, generated: str, history: Sequence[Turn], text: str
) -> tuple[str, router.Decision]:
    """The text the customer gets for ``decision``, and the decision it was sent under
    (changed to ``rephrase`` when the fact guard left nothing worth sending).

    ``history`` is the conversation's recent turns (what the model saw), ``text`` the
    customer's new message."""
    reply = fill_slots(router.answer_text(decision, persona, generated), persona.facts)
    if decision.says != "model":
        return reply, decision  # the persona's own words: nothing invented
    said = [t.text for t in history if t.role in _SAID_BY] + [text]
    guarded = guard_reply(reply, said, persona.facts)
    for kind in guarded.kinds:
        FACTS_REPLACED.labels(kind).inc()
    if not guarded.lost_point:
        return guarded.text, decision
    REPLIES_WITHDRAWN.inc()
    withdrawn = router.withdrawn(decision, "the fact guard left the reply without its point")
    return fill_slots(persona.messages.rephrase, persona.facts), withdrawn
