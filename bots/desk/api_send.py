"""``POST /api/admin/messages``: a proactive message from a script or an admin, and
``GET /api/admin/messages/{reply_id}``: what became of it.

Admins only (an admin's API token, or a signed-in admin with the CSRF token), the same
guard as the rest of the admin API; each send is in the desk's audit log. The rules are
``chatbot send``'s (``core.proactive``): only a customer the bot has talked to before,
through the outbound stream, stored in history. The answer is 202 with the reply id at
once; the delivery's outcome is read with the GET (``queued`` until the platform answers).
An ``id`` in the body makes a retried request send nothing new (the answer says
``repeated``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.webjson import BadRequest, clean_name, read_object
from bots.desk.auth import Principal, guarded

if TYPE_CHECKING:
    from bots.desk.app import Desk

MAX_ID_CHARS = 128


def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(400, f'give "{name}" as a non-empty string')
    return value


def send_routes(desk: Desk, default_bot: str) -> list[BaseRoute]:
    proactive = desk.proactive

    async def send(request: Request, who: Principal) -> Response:
        data = await read_object(request, desk.config.max_body_bytes)
        bot_id = _text(data, "bot", required=False) or default_bot
        platform, user, text = (_text(data, name) or "" for name in ("platform", "user", "text"))
        chat = _text(data, "chat", required=False)
        request_id = clean_name(_text(data, "id", required=False) or "", MAX_ID_CHARS) or None
        try:
            sent = await proactive.send(
                bot_id,
                platform,
                user,
                text,
                chat_id=chat,
                sender=f"desk:{who.username}",
                request_id=request_id,
                max_chars=desk.config.max_message_chars,
            )
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from None
        if not sent.repeated:
            detail = f"{bot_id} {platform}:{user} ({sent.reply_id})"
            await desk.audit.record(who.username, "message.send", detail)
        body = {
            "reply_id": sent.reply_id,
            "bot": bot_id,
            "platform": platform,
            "user": user,
            "chat": sent.conversation.chat_id,
            "status": "repeated" if sent.repeated else "queued",
        }
        return JSONResponse(body, status_code=200 if sent.repeated else 202)

    async def outcome(request: Request, who: Principal) -> Response:
        reply_id = str(request.path_params["reply_id"])[:64]
        found = await proactive.outcome(reply_id)
        body = found or {"status": "queued", "detail": "not delivered yet, or no such message"}
        return JSONResponse({"reply_id": reply_id, **body})

    return [
        Route("/api/admin/messages", guarded(desk.auth, send, admin=True), methods=["POST"]),
        Route("/api/admin/messages/{reply_id}", guarded(desk.auth, outcome, admin=True), methods=["GET"]),
    ]
