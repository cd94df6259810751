"""``chatbot escalations``: work the support desk's tickets from the terminal.

    chatbot escalations list [--status open|claimed|resolved|all] [--bot B] [--platform P]
    chatbot escalations show ID
    chatbot escalations claim|release|resolve ID [--agent NAME]
    chatbot escalations reply ID TEXT [--agent NAME]

The same data and rules as the web desk (``core.tickets``), so a team without the web
app loses nothing. ``--agent`` defaults to the login name ($USER).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from bots.config import load_settings
from bots.console import friendly, out
from core.errors import ConfigError
from core.tickets import Ticket, TicketStatus

T = TypeVar("T")

app = typer.Typer(help="Conversations handed to the support team (tickets).", no_args_is_help=True)


def _default_agent() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return ""


AgentOpt = Annotated[
    str, typer.Option("--agent", help="who acts (default: $USER)", default_factory=_default_agent)
]
IdArg = Annotated[str, typer.Argument(help="ticket id (see `chatbot escalations list`)")]


def _with_tickets(fn: Callable[[Any], Awaitable[T]]) -> T:
    from bots.runtime import Runtime

    async def main() -> T:
        async with Runtime(load_settings(), seed_personas=False) as rt:
            return await fn(rt.tickets)

    return asyncio.run(main())


def _agent(agent: str) -> str:
    agent = agent.strip()
    if not agent:
        raise ConfigError("name the agent with --agent NAME (or set $USER)")
    return agent


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at else "-"


def _line(t: Ticket) -> str:
    who = t.display_name or t.user_id
    holder = f" @{t.assignee}" if t.assignee else ""
    return (
        f"{t.id}  {t.status.value:<8}{holder}  {t.bot_id} {t.platform}:{t.user_id} ({who})  "
        f"{t.reason}: {t.detail}  [{_when(t.updated_at)}]"
    )


@app.command("list")
@friendly
def list_tickets(
    status: Annotated[
        str, typer.Option(help="open, claimed, resolved, or all (default: open and claimed)")
    ] = "",
    bot: Annotated[str | None, typer.Option(help="only this bot")] = None,
    platform: Annotated[str | None, typer.Option(help="only this platform")] = None,
) -> None:
    """Tickets, newest activity first, with counts per status."""
    wanted: list[TicketStatus | None]
    if status in ("", "active"):
        wanted = [TicketStatus.OPEN, TicketStatus.CLAIMED]
    elif status == "all":
        wanted = [None]
    elif status in TicketStatus.__members__.values():
        wanted = [TicketStatus(status)]
    else:
        raise ConfigError(f"unknown status {status!r}; use open, claimed, resolved or all")

    async def main(tickets: Any) -> tuple[dict[str, int], list[Ticket]]:
        rows: list[Ticket] = []
        for s in wanted:
            rows += await tickets.list(status=s, bot_id=bot, platform=platform)
        rows.sort(key=lambda t: t.updated_at, reverse=True)
        return await tickets.counts(bot_id=bot, platform=platform), rows

    counts, rows = _with_tickets(main)
    out.print("  ".join(f"{name}: {n}" for name, n in counts.items()), highlight=False)
    if not rows:
        out.print("no open escalations" if status in ("", "active") else f"no {status} escalations")
    for ticket in rows:
        out.print(_line(ticket), markup=False, highlight=False)


@app.command("show")
@friendly
def show(ticket_id: IdArg) -> None:
    """One ticket: who, why, the live transcript and the audit trail."""

    async def main(tickets: Any) -> tuple[Ticket, list[Any], list[Any]]:
        return (
            await tickets.get(ticket_id),
            await tickets.transcript(ticket_id),
            await tickets.audit(ticket_id),
        )

    ticket, turns, audit = _with_tickets(main)
    out.print(_line(ticket), markup=False, highlight=False)
    out.print(f"intent {ticket.intent or '-'} ({ticket.confidence:.2f})", highlight=False)
    out.print("[bold]transcript[/]")
    for turn in turns:
        who = f"{turn.role} {turn.display_name}".strip() if turn.role == "agent" else turn.role
        out.print(f"  {who:>12}: {turn.text}", markup=False, highlight=False)
    out.print("[bold]audit[/]")
    for entry in audit:
        out.print(
            f"  {_when(entry.at)}  {entry.actor}  {entry.action}  {entry.detail}",
            markup=False,
            highlight=False,
        )


@app.command("claim")
@friendly
def claim(ticket_id: IdArg, agent: AgentOpt) -> None:
    """Take a ticket (or take over a claim whose agent has gone quiet)."""
    ticket = _with_tickets(lambda t: t.claim(ticket_id, _agent(agent)))
    out.print(f"ticket {ticket.id} claimed by {ticket.assignee}", markup=False, highlight=False)


@app.command("release")
@friendly
def release(ticket_id: IdArg, agent: AgentOpt) -> None:
    """Put a claimed ticket back in the queue."""
    ticket = _with_tickets(lambda t: t.release(ticket_id, _agent(agent)))
    out.print(f"ticket {ticket.id} is back in the queue", highlight=False)


@app.command("reply")
@friendly
def reply(
    ticket_id: IdArg,
    text: Annotated[str, typer.Argument(help="what to tell the customer")],
    agent: AgentOpt,
) -> None:
    """Answer the customer on their own platform (claims an open ticket)."""
    _with_tickets(lambda t: t.reply(ticket_id, _agent(agent), text))
    out.print(f"sent to the customer of ticket {ticket_id}", markup=False, highlight=False)


@app.command("resolve")
@friendly
def resolve(ticket_id: IdArg, agent: AgentOpt) -> None:
    """Close the ticket; the bot answers this customer again."""
    ticket = _with_tickets(lambda t: t.resolve(ticket_id, _agent(agent)))
    out.print(f"ticket {ticket.id} resolved; the bot answers this user again", highlight=False)
