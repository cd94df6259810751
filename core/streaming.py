"""Publishing a reply while it is written: its text so far, every few tokens.

The engine follows each generated reply it streams (web chat always; Telegram, Discord
and Slack when the persona says ``stream: edit``) and publishes the text so far through
``core.partials``, rendered exactly as the final reply will be (the generator's cleaning,
then the persona's slots), so the final text extends the last partial. The first text is
published as soon as there is any (what the customer waits for); later ones at most
every ``every_tokens`` new tokens and ``every_s`` seconds, so a fast model does not turn
into a Redis write per token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.messages import IncomingMessage
from core.partials import Partial
from core.persona import Persona
from core.protocols import TokenStream

Publish = Callable[[Partial], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """How often partials go out per reply (both bounds hold)."""

    every_tokens: int = 8
    every_s: float = 0.1


def wants_partials(message: IncomingMessage, persona: Persona | None) -> bool:
    """The web chat shows every reply as it is written; other platforms on opt-in."""
    return message.platform == "web" or (persona is not None and persona.stream == "edit")


class Follower:
    """Publishes one reply's partials until the reply is finished."""

    def __init__(
        self,
        message: IncomingMessage,
        stream: TokenStream,
        render: Callable[[str], str],
        publish: Publish,
        policy: StreamPolicy,
    ) -> None:
        self.message = message
        self.stream = stream
        self.render = render  # generator text -> what the customer will see (slots filled)
        self.publish = publish
        self.policy = policy
        self.seq = 0  # partials published so far
        self.last = ""  # the text of the last one

    async def run(self) -> None:
        """Publish until the stream ends (it returns then, without publishing the final)."""
        version, sent_at_version, sent_at = -1, 0, 0.0
        while True:
            # the first text as soon as there is any; then wake only every `every_tokens`
            # and `every_s` (the model's thread then wakes this loop a few times a second)
            if self.seq:
                wanted = sent_at_version + self.policy.every_tokens
                version = await self.stream.changed(
                    version, wanted - version, not_before=sent_at + self.policy.every_s
                )
            else:
                version = await self.stream.changed(version, 1)
            if self.stream.done:
                return
            text = self.render(self.stream.text_so_far())
            if not text or text == self.last:
                continue
            await self._send(text)
            sent_at_version, sent_at = version, time.monotonic()

    async def settle(self, final: str) -> None:
        """After the reply is final: when the last partial is not where the final text
        starts (a reply cut back to its last whole sentence, or replaced by a fixed
        text), publish the final text, so readers never keep a text that will not be."""
        if self.seq and not final.startswith(self.last):
            await self._send(final)

    async def _send(self, text: str) -> None:
        await self.publish(Partial.of(self.message, text, self.seq))
        self.seq += 1
        self.last = text
