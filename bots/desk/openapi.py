"""``GET /api/openapi.json``: the web app's HTTP API, kept by hand next to the routes.

tests/test_desk_api.py checks that every API route of the app appears here, so a new
endpoint without its entry fails the suite.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

PATH_PARAMS = ("ticket_id", "bot", "username", "reply_id")
SESSION_OR_TOKEN: list[dict[str, list[str]]] = [{"session": [], "csrf": []}, {"token": []}]


def _op(summary: str, *, auth: str = "agent", body: str = "", params: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
    if auth != "none":
        op["security"] = SESSION_OR_TOKEN
        op["responses"].update({"401": {"description": "not signed in"}})
        op["x-role"] = auth
        if auth == "admin":
            op["responses"]["403"] = {"description": "not an admin"}
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": body}}},
        }
        op["responses"]["400"] = {"description": "bad input (one line in 'error')"}
        op["responses"]["413"] = {"description": "body over the size limit"}
    if params:
        op["parameters"] = [
            {
                "name": p,
                "in": "path" if p in PATH_PARAMS else "query",
                "schema": {"type": "string"},
                "required": p in PATH_PARAMS,
            }
            for p in params
        ]
    return op


TICKET = ("ticket_id",)

PATHS: dict[str, dict[str, dict[str, Any]]] = {
    "/api/chat": {
        "post": _op(
            "Send a customer message; waits for the bot's reply, or answers at once (route 'human') "
            "when the team holds the conversation. Browsers are identified by a signed cookie; "
            "'user' is accepted only with an API token.",
            auth="none",
            body='{"text": str, "name"?: str, "user"?: str (API token only)}; '
            "the default bot's (each bot's web chat: /b/{bot}/api/chat, /b/{bot}/api/chat/history, ...)",
        )
    },
    "/api/chat/history": {
        "get": _op("The caller's conversation so far", auth="none", params=("bot", "user"))
    },
    "/api/chat/events": {
        "get": _op("Server-Sent Events: replies that arrive later (agent answers, notices)", auth="none")
    },
    "/api/bot": {
        "get": _op("The default bot's name and greeting (each bot's: /b/{bot}/api/bot)", auth="none")
    },
    "/api/auth/login": {
        "post": _op(
            "Sign in; sets the session and CSRF cookies (429 when rate-limited)",
            auth="none",
            body='{"username": str, "password": str}',
        )
    },
    "/api/auth/logout": {"post": _op("Sign out")},
    "/api/auth/me": {"get": _op("The signed-in account and its CSRF token")},
    "/api/desk/tickets": {
        "get": _op(
            "The queue, newest activity first, with counts per status", params=("status", "bot", "platform")
        )
    },
    "/api/desk/tickets/{ticket_id}": {
        "get": _op("A ticket, its live transcript and audit trail", params=TICKET)
    },
    "/api/desk/tickets/{ticket_id}/claim": {
        "post": _op("Claim (409 if another active agent holds it)", params=TICKET)
    },
    "/api/desk/tickets/{ticket_id}/release": {"post": _op("Put the ticket back in the queue", params=TICKET)},
    "/api/desk/tickets/{ticket_id}/reply": {
        "post": _op("Answer the customer on their platform", body='{"text": str}', params=TICKET)
    },
    "/api/desk/tickets/{ticket_id}/resolve": {
        "post": _op("Hand the conversation back to the bot", params=TICKET)
    },
    "/api/desk/events": {"get": _op("Server-Sent Events: ticket changes (opened, message, claimed, ...)")},
    "/api/admin/personas": {"get": _op("Bot ids", auth="admin")},
    "/api/admin/personas/{bot}": {
        "get": _op("A bot's live persona (JSON and YAML) and its versions", auth="admin", params=("bot",)),
        "put": _op(
            "Replace the persona (validated like `chatbot persona import`, saved as a new version)",
            auth="admin",
            body='{"persona": {...}} or {"yaml": str}',
            params=("bot",),
        ),
    },
    "/api/admin/personas/{bot}/preview": {
        "post": _op(
            "A test message through classifier, router and generator: intent, route, reply, buttons",
            auth="admin",
            body='{"text": str, "persona"?: {...} (a draft)}',
            params=("bot",),
        )
    },
    "/api/admin/intents/{bot}": {
        "get": _op("The intents the bot's classifier knows", auth="admin", params=("bot",))
    },
    "/api/admin/accounts": {
        "get": _op("Accounts", auth="admin"),
        "post": _op(
            "Create an account",
            auth="admin",
            body='{"username": str, "role": "agent"|"admin", "password": str}',
        ),
    },
    "/api/admin/accounts/{username}/disable": {
        "post": _op("Disable an account", auth="admin", params=("username",))
    },
    "/api/admin/accounts/{username}/enable": {
        "post": _op("Enable an account", auth="admin", params=("username",))
    },
    "/api/admin/accounts/{username}/password": {
        "post": _op("Set a new password", auth="admin", body='{"password": str}', params=("username",))
    },
    "/api/admin/messages": {
        "post": _op(
            "Send a proactive message to a customer the bot has talked to before (202 queued; "
            "404 no such conversation; 409 bot disabled, not on that platform, or not running)",
            auth="admin",
            body='{"platform": str, "user": str, "text": str, "bot"?: str, "chat"?: str, "id"?: str}',
        )
    },
    "/api/admin/messages/{reply_id}": {
        "get": _op(
            "What became of a proactive message: queued, delivered, or refused (with the platform's reason)",
            auth="admin",
            params=("reply_id",),
        )
    },
    "/api/admin/audit": {"get": _op("The desk's audit log, newest first", auth="admin", params=("limit",))},
    "/api/openapi.json": {"get": _op("This document", auth="none")},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "chatbot web app", "version": "1"},
    "components": {
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "desk_session"},
            "csrf": {
                "type": "apiKey",
                "in": "header",
                "name": "X-CSRF-Token",
                "description": "needed with the session cookie on POST/PUT",
            },
            "token": {"type": "http", "scheme": "bearer", "description": "`chatbot token create NAME`"},
        }
    },
    "paths": PATHS,
}


def openapi_routes() -> list[BaseRoute]:
    async def document(request: Request) -> Response:
        return JSONResponse(DOCUMENT)

    return [Route("/api/openapi.json", document, methods=["GET"])]
