"""Answering a batch in waves (``CHATBOT_GENERATION=waves``, the engine before
continuous batching; kept to compare against).

The n-th message of every conversation in the batch goes into wave n, so two quick
messages from one user are answered in order, the second seeing the first in its
history. Per wave: one state read and one classifier call, all ``generate`` replies
handed to the reply model together (one left-padded ``generate`` call for the plain
generator), one commit. The next wave, and the next batch, start only when the whole
wave is committed: every reply of a wave waits for its longest one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from core.leases import Admission
from core.messages import ConversationKey, Reply
from core.metrics import observe_reply
from core.persona import Persona
from core.steps import Steps, together
from core.work import Entry


async def answer_in_waves(
    steps: Steps, batch: Sequence[Entry], personas: dict[str, Persona], admission: Admission
) -> dict[str, Reply]:
    """The replies of ``batch`` by entry id, each wave committed before the next starts."""
    waves: list[list[Entry]] = []
    depth: dict[ConversationKey, int] = defaultdict(int)
    for entry_id, message in batch:
        n = depth[message.conversation]
        depth[message.conversation] += 1
        if n == len(waves):
            waves.append([])
        waves[n].append((entry_id, message))
    replies: dict[str, Reply] = {}
    for wave in waves:
        works = await steps.prepare(wave, personas)
        await steps.start_generation(works)
        answers = await together([steps.finish(w) for w in works])
        await steps.commit(works, answers, admission)
        for w, reply in zip(works, answers, strict=True):
            replies[w.entry_id] = reply
            observe_reply(w.message, reply)
    return replies
