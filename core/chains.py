"""Answering a batch conversation by conversation (``CHATBOT_GENERATION=continuous``).

The first message of every conversation in the batch is prepared together (one state
read, one classifier call) and handed to the reply model at once; with
``core.batching.ContinuousGenerator`` each reply joins the running batch at the next
decoding step, next to the replies of every other batch the engine has in hand. Each
conversation then goes on by itself: as soon as its reply is written it is committed
(history, reply on the outbound stream, XACK), and only then is the conversation's next
message of the batch prepared, so that message's prompt holds the turn just committed.
No reply waits for another conversation's.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.leases import Admission
from core.messages import ConversationKey, Reply
from core.metrics import observe_reply
from core.persona import Persona
from core.steps import Steps, together
from core.work import Entry, Work


async def answer_in_chains(
    steps: Steps, batch: Sequence[Entry], personas: dict[str, Persona], admission: Admission
) -> dict[str, Reply]:
    """The replies of ``batch`` by entry id, each committed as soon as it is written."""
    chains: dict[ConversationKey, list[Entry]] = {}
    for entry in batch:
        chains.setdefault(entry[1].conversation, []).append(entry)
    replies: dict[str, Reply] = {}

    async def answer(work: Work, rest: list[Entry]) -> None:
        while True:
            reply = await steps.finish(work)
            await steps.commit([work], [reply], admission)
            replies[work.entry_id] = reply
            observe_reply(work.message, reply)
            if not rest:
                return
            [work] = await steps.prepare([rest.pop(0)], personas)
            await steps.start_generation([work])

    heads = await steps.prepare([entries[0] for entries in chains.values()], personas)
    await steps.start_generation(heads)
    await together([answer(w, chains[w.message.conversation][1:]) for w in heads])
    return replies
