"""``chatbot dead-letters``: intake entries the engine gave up on (``core.dead_letters``).

    chatbot dead-letters list [--limit N]
    chatbot dead-letters retry ID... | --all     queue them on the intake again
    chatbot dead-letters drop ID... | --all      delete them

Retry after fixing the cause (a persona, a model, a corrupt record): the customer got
the "unavailable" text when the entry was dead-lettered, and gets a real answer then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from bots.config import load_settings
from bots.console import friendly, out
from core.dead_letters import DeadLetters
from core.errors import ConfigError

T = TypeVar("T")

app = typer.Typer(help="Intake entries that failed too often (poison entries).", no_args_is_help=True)

IdsArg = Annotated[list[str] | None, typer.Argument(help="dead-letter ids (see `chatbot dead-letters list`)")]
AllOpt = Annotated[bool, typer.Option("--all", help="every dead letter")]


def _with_dead_letters(fn: Callable[[DeadLetters], Awaitable[T]]) -> T:
    from bots.runtime import Runtime

    async def main() -> T:
        async with Runtime(load_settings(), seed_personas=False) as rt:
            return await fn(DeadLetters(rt.redis, rt.bus, rt.personas))

    return asyncio.run(main())


def _chosen(ids: list[str] | None, every: bool) -> list[str] | None:
    if every and ids:
        raise ConfigError("give dead-letter ids or --all, not both")
    if not every and not ids:
        raise ConfigError("name the dead letters (ids from `chatbot dead-letters list`) or pass --all")
    return None if every else list(ids or [])


@app.command("list")
@friendly
def list_(limit: Annotated[int, typer.Option("--limit", min=1)] = 100) -> None:
    """Show dead letters, oldest first."""
    letters: list[Any] = _with_dead_letters(lambda d: d.list(limit))
    if not letters:
        out.print("no dead letters", highlight=False, markup=False)
        return
    for d in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.failed_at))
        m = d.message
        who = f"{m.platform}/{m.bot_id} user {m.user_id}"
        out.print(
            f"{d.id}  {when}  {who}  attempts {d.attempts}  {d.error[:100]}", highlight=False, markup=False
        )


@app.command("retry")
@friendly
def retry(ids: IdsArg = None, every: AllOpt = False) -> None:
    """Queue dead letters on the intake again (after fixing the cause)."""
    chosen = _chosen(ids, every)
    out.print(f"queued again: {_with_dead_letters(lambda d: d.retry(chosen))}", highlight=False, markup=False)


@app.command("drop")
@friendly
def drop(ids: IdsArg = None, every: AllOpt = False) -> None:
    """Delete dead letters."""
    chosen = _chosen(ids, every)
    out.print(f"dropped: {_with_dead_letters(lambda d: d.drop(chosen))}", highlight=False, markup=False)
