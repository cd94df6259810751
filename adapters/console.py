"""The console adapter: ``chatbot chat --user NAME``.

Interactive in a terminal; when stdin is a pipe it prints one reply per line read
(a multi-line reply is joined onto one line) and exits at end of input.

While the support team holds the conversation the engine answers with an empty
receipt: the console then prints a short note (an empty line when piped, so input and
output lines still pair up). An agent's reply or a "still waiting" notice arrives when
nobody is waiting; it is printed as it comes, named after the agent.
"""

from __future__ import annotations

import asyncio
import sys
from typing import ClassVar, TextIO

from adapters.local import LocalAdapter
from core.messages import IncomingMessage, Reply

HELD_NOTE = "(sent to the support team; a person will answer here)"


class ConsoleAdapter(LocalAdapter):
    platform: ClassVar[str] = "console"
    _out: TextIO | None = None
    _bot_name: str = "bot"

    async def on_unsolicited(self, reply: Reply) -> None:
        if self._out is None:  # not chatting (yet): keep it like any local adapter
            await super().on_unsolicited(reply)
            return
        name = reply.meta.get("agent") or self._bot_name
        self._out.write(f"\n{name}: {reply.text}\n")
        self._out.flush()

    async def chat(
        self,
        user: str,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        greeting: str = "",
        bot_name: str = "bot",
    ) -> int:
        """Read lines until end of input; returns how many messages were answered."""
        stdin = stdin or sys.stdin  # looked up now: a caller may have swapped sys.stdin
        stdout = stdout or sys.stdout
        interactive = stdin.isatty() and stdout.isatty()
        self._out, self._bot_name = stdout, bot_name
        for earlier in self.take_unclaimed(user):
            await self.on_unsolicited(earlier)
        if interactive and greeting:
            stdout.write(f"{bot_name}: {greeting}\n")
        answered = 0
        while True:
            if interactive:
                stdout.write("you: ")
                stdout.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            message = IncomingMessage(
                bot_id=self.bot_id,
                platform=self.platform,
                chat_id=user,
                user_id=user,
                text=line.rstrip("\n"),
                display_name=user,
            )
            reply = await self.ask(message)
            if interactive:
                stdout.write(f"{bot_name}: {reply.text}\n" if reply.text else f"{HELD_NOTE}\n")
            else:
                stdout.write(" ".join(reply.text.split()) + "\n")
            stdout.flush()
            answered += 1
        return answered
