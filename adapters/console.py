"""The console adapter: ``chatbot chat --user NAME``.

Interactive in a terminal; when stdin is a pipe it prints one reply per line read
(a multi-line reply is joined onto one line) and exits at end of input.

Quick replies are numbered under the reply (on the same line when piped); typing a
number picks one. ``/help`` and ``/human`` typed are commands, as on Telegram.

While the support team holds the conversation the engine answers with an empty
receipt: the console then prints a short note (an empty line when piped, so input and
output lines still pair up). An agent's reply or a "still waiting" notice arrives when
nobody is waiting; it is printed as it comes, named after the agent.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import ClassVar, TextIO

from adapters.interactive import numbered, pick
from adapters.local import LocalAdapter
from core.errors import BotUnavailable
from core.messages import IncomingMessage, QuickReply, Reply, parse_command

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
        choices: Sequence[QuickReply] = (),
    ) -> int:
        """Read lines until end of input; returns how many messages were answered.
        ``choices``: the quick replies under the greeting."""
        stdin = stdin or sys.stdin  # looked up now: a caller may have swapped sys.stdin
        stdout = stdout or sys.stdout
        interactive = stdin.isatty() and stdout.isatty()
        self._out, self._bot_name = stdout, bot_name
        for earlier in self.take_unclaimed(user):
            await self.on_unsolicited(earlier)
        if interactive and greeting:
            stdout.write(f"{bot_name}: {greeting}\n" + "".join(f"  {o}\n" for o in numbered(choices)))
        offered, answered = tuple(choices) if interactive else (), 0
        while True:
            if interactive:
                stdout.write("you: ")
                stdout.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            text, choice = line.rstrip("\n"), pick(line, offered)
            message = IncomingMessage(
                bot_id=self.bot_id,
                platform=self.platform,
                chat_id=user,
                user_id=user,
                text=choice.sends if choice else text,
                display_name=user,
                command="" if choice else parse_command(text)[0],
                intent=choice.intent if choice else "",
            )
            try:
                reply = await self.ask(message)
            except TimeoutError:  # nobody answered: say so in one line, not a traceback
                raise BotUnavailable(
                    f"no reply within {self.reply_timeout:g} s: is an engine worker running "
                    "(`chatbot run`, or `chatbot chat` without --no-worker)?"
                ) from None
            offered, options = reply.quick_replies, numbered(reply.quick_replies)
            if interactive:
                said = f"{bot_name}: {reply.text}\n" if reply.text else f"{HELD_NOTE}\n"
                stdout.write(said + "".join(f"  {o}\n" for o in options))
            else:
                stdout.write("  ".join([" ".join(reply.text.split()), *options]) + "\n")
            stdout.flush()
            answered += 1
        return answered
