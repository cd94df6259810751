"""``chatbot send``: a proactive message to a customer the bot has talked to before.

    chatbot send --bot shop --platform telegram --user 42 "Your order has shipped."

The message goes through the bot's outbound stream like any reply (retries, rate limits,
split parts sent once) and is stored in the conversation's history as a bot turn
(``core.proactive``). The command waits up to ``--wait`` seconds for the platform's
answer: delivered, or its refusal in one line (exit code 2), such as a Telegram user who
blocked the bot. A customer the bot never talked to there is one line too, and nothing
is sent. ``--id`` makes a retried command send nothing new.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from typing import Annotated, Any

import typer

from bots.config import load_settings
from bots.console import console, fail, friendly, out


def _sender() -> str:
    try:
        return "cli:" + (os.environ.get("USER") or getpass.getuser())
    except (KeyError, OSError):  # no login name in a bare container
        return "cli"


@friendly
def send(
    text: Annotated[str, typer.Argument(help="the message")],
    platform: Annotated[str, typer.Option("--platform", help="web, telegram, slack or discord")],
    user: Annotated[str, typer.Option("--user", help="the customer's user id on that platform")],
    bot: Annotated[str | None, typer.Option("--bot", help="bot id (default CHATBOT_DEFAULT_BOT)")] = None,
    chat: Annotated[
        str | None, typer.Option("--chat", help="which chat, when the customer has several with the bot")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--id", help="request id: sending again with it sends nothing new")
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="seconds to wait for the platform's answer")
    ] = 30,
) -> None:
    """Write first to a customer the bot has talked to before (an order update, a follow-up)."""
    from bots.runtime import Runtime

    settings = load_settings()
    bot_id = bot or settings.default_bot

    async def main() -> tuple[Any, dict[str, str] | None]:
        async with Runtime(settings) as rt:
            try:
                sent = await rt.proactive.send(
                    bot_id, platform, user, text, chat_id=chat, sender=_sender(), request_id=request_id
                )
            except ValueError as exc:
                fail(str(exc))
            deadline = time.monotonic() + wait
            outcome = await rt.proactive.outcome(sent.reply_id)
            while outcome is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                outcome = await rt.proactive.outcome(sent.reply_id)
            return sent, outcome

    sent, outcome = asyncio.run(main())
    where = f"{platform} user {user} (bot {bot_id}, chat {sent.conversation.chat_id})"
    if sent.repeated:
        out.print(f"already sent as {sent.reply_id} (request id {request_id}); nothing new sent to {where}")
    elif outcome is None:
        console.print(
            f"queued {sent.reply_id} for {where}; not confirmed within {wait:g}s, still being delivered"
        )
    elif outcome["status"] == "refused":
        fail(f"{platform} refused the message to {where}: {outcome['detail']}")
    else:
        out.print(f"delivered to {where} ({sent.reply_id})", highlight=False)
