"""Publishing a reply while it is written: its text so far, every few tokens.

The engine follows each generated reply it streams (web chat always; Telegram, Discord
and Slack when the persona says ``stream: edit``) and publishes the text so far through
``core.partials``, rendered exactly as the final reply will be (the generator's cleaning,
then the persona's slots), so the final text extends the last partial. The first text is
published as soon as there is any (what the customer waits for); later ones at most
every ``every_tokens`` new tokens and ``every_s`` seconds, so a fast model does not turn
into a Redis write per token.

Under load the engine also caps its partials per second in all (``max_per_s``): with
more replies being written than ``max_per_s * every_s``, each reply's partials are
spaced further apart (:class:`Pacer`). Rendering and publishing partials is work on the
event loop, which shares the cores with the model (on a 2-core CPU every millisecond of
it slows the model's next steps); spending it on smoother previews for many customers
at once would delay every one of their finished replies. The first text and the final
reply are never held back. vLLM's and TensorRT-LLM's ``stream_interval`` make the same
trade.
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
    """How often partials go out: per reply, after ``every_tokens`` new tokens and
    ``every_s`` seconds (both bounds hold); per engine, ``max_per_s`` (0: no cap)."""

    every_tokens: int = 8
    every_s: float = 0.1
    max_per_s: float = 150.0


class Pacer:
    """One engine's partials: spaces each reply's so that all of them together stay
    under ``policy.max_per_s`` (event-loop only)."""

    def __init__(self, policy: StreamPolicy) -> None:
        self.policy = policy
        self.pacing = 0  # replies past their first partial and not yet finished

    def interval(self) -> float:
        """Seconds between two partials of one reply, now."""
        policy = self.policy
        if policy.max_per_s <= 0:
            return policy.every_s
        return max(policy.every_s, self.pacing / policy.max_per_s)


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
        pacer: Pacer,
    ) -> None:
        self.message = message
        self.stream = stream
        self.render = render  # generator text -> what the customer will see (slots filled)
        self.publish = publish
        self.pacer = pacer
        self.seq = 0  # partials published so far
        self.last = ""  # the text of the last one

    async def run(self) -> None:
        """Publish until the stream ends (it returns then, without publishing the final)."""
        try:
            await self._follow()
        finally:
            if self.seq:
                self.pacer.pacing -= 1

    async def _follow(self) -> None:
        version, sent_at_version, sent_at = -1, 0, 0.0
        while True:
            # the first text as soon as there is any; then wake only every `every_tokens`
            # and the pacer's interval (the model's thread does not wake this loop meanwhile)
            if self.seq:
                wanted = sent_at_version + self.pacer.policy.every_tokens
                version = await self.stream.changed(
                    version, wanted - version, not_before=sent_at + self.pacer.interval()
                )
            else:
                version = await self.stream.changed(version, 1)
            if self.stream.done:
                return
            text = self.render(self.stream.text_so_far())
            if not text or text == self.last:
                continue
            await self._send(text)
            if self.seq == 1:
                self.pacer.pacing += 1
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
