"""The console adapter: ``chatbot chat --user NAME``.

Interactive in a terminal; when stdin is a pipe it prints one reply per line read
(a multi-line reply is joined onto one line) and exits at end of input.
"""

from __future__ import annotations

import asyncio
import sys
from typing import ClassVar, TextIO

from adapters.local import LocalAdapter
from core.messages import IncomingMessage


class ConsoleAdapter(LocalAdapter):
    platform: ClassVar[str] = "console"

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
            text = reply.text if interactive else " ".join(reply.text.split())
            stdout.write(f"{bot_name}: {text}\n" if interactive else f"{text}\n")
            stdout.flush()
            answered += 1
        return answered
