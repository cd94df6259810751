"""The agents' JSON API: the queue, one ticket, claim / release / reply / resolve, and
``GET /api/desk/events``, the queue's and tickets' push channel (Server-Sent Events fed
by ``Tickets.subscribe()``)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.webjson import BadRequest, clean_name, read_object
from bots.desk.auth import Principal, guarded
from core.errors import TicketNotFound
from core.history import Turn
from core.tickets import TicketStatus

if TYPE_CHECKING:
    from bots.desk.app import Desk

TICKET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def turn_json(turn: Turn) -> dict[str, Any]:
    return {
        "role": turn.role,
        "text": turn.text,
        "at": turn.timestamp,
        "name": turn.display_name,
        "intent": turn.intent,
        "confidence": round(turn.confidence, 4),
        "route": turn.route,
        "attachments": [{**asdict(a), "summary": a.describe()} for a in turn.attachments],
    }


def _ticket_id(request: Request) -> str:
    ticket_id = str(request.path_params["ticket_id"])
    if not TICKET_ID.match(ticket_id):
        raise TicketNotFound(f"no ticket {ticket_id[:64]!r}")
    return ticket_id


def _filter(request: Request, name: str) -> str | None:
    value = clean_name(request.query_params.get(name, ""), 64)
    return value or None


def ticket_routes(desk: Desk) -> list[BaseRoute]:
    tickets = desk.tickets

    async def queue(request: Request, who: Principal) -> Response:
        raw = request.query_params.get("status", "")
        try:
            status = TicketStatus(raw) if raw and raw != "all" else None
        except ValueError:
            raise BadRequest(
                400, f"status must be one of: all, {', '.join(s.value for s in TicketStatus)}"
            ) from None
        bot_id, platform = _filter(request, "bot"), _filter(request, "platform")
        found = await tickets.list(status=status, bot_id=bot_id, platform=platform)
        counts = await tickets.counts(bot_id=bot_id, platform=platform)
        return JSONResponse({"tickets": [t.to_dict() for t in found], "counts": counts})

    async def show(request: Request, who: Principal) -> Response:
        ticket_id = _ticket_id(request)
        ticket = await tickets.get(ticket_id)
        transcript = await tickets.transcript(ticket_id)
        trail = await tickets.audit(ticket_id)
        return JSONResponse(
            {
                "ticket": ticket.to_dict(),
                "transcript": [turn_json(t) for t in transcript],
                "audit": [asdict(entry) for entry in trail],
            }
        )

    def change(action: str) -> Any:
        async def endpoint(request: Request, who: Principal) -> Response:
            ticket_id = _ticket_id(request)
            ticket = await getattr(tickets, action)(ticket_id, who.username)
            await desk.audit.record(who.username, f"ticket.{action}", ticket_id)
            return JSONResponse({"ticket": ticket.to_dict()})

        return endpoint

    async def reply(request: Request, who: Principal) -> Response:
        ticket_id = _ticket_id(request)
        data = await read_object(request, desk.config.max_body_bytes)
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(400, 'give the reply as {"text": "..."} (not empty)')
        if len(text) > desk.config.max_message_chars:
            raise BadRequest(400, f"a reply may have at most {desk.config.max_message_chars} characters")
        turn = await tickets.reply(ticket_id, who.username, text.strip())
        await desk.audit.record(who.username, "ticket.reply", ticket_id)
        return JSONResponse({"turn": turn_json(turn)})

    async def events(request: Request, who: Principal) -> Response:
        async def stream() -> AsyncIterator[dict[str, str]]:
            yield {"event": "ready", "data": "{}"}
            async for event in tickets.subscribe():
                yield {"event": "ticket", "data": json.dumps(asdict(event))}

        return EventSourceResponse(stream(), ping=15)

    def route(path: str, handler: Any, method: str = "GET") -> Route:
        return Route(path, guarded(desk.auth, handler), methods=[method])

    base = "/api/desk/tickets/{ticket_id}"
    return [
        route("/api/desk/tickets", queue),
        route(base, show),
        route(base + "/claim", change("claim"), "POST"),
        route(base + "/release", change("release"), "POST"),
        route(base + "/resolve", change("resolve"), "POST"),
        route(base + "/reply", reply, "POST"),
        route("/api/desk/events", events),
    ]
