"""``POST /api/auth/login``, ``POST /api/auth/logout``, ``GET /api/auth/me``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.webjson import BadRequest, error, read_object
from bots.desk.auth import Principal, clear_session_cookies, guarded, set_session_cookies

if TYPE_CHECKING:
    from bots.desk.app import Desk

FAILED = "wrong username or password, or the account is disabled"


def auth_routes(desk: Desk) -> list[BaseRoute]:
    secure = desk.config.cookie_secure

    async def login(request: Request) -> Response:
        try:
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                raise BadRequest(415, 'send JSON: {"username": ..., "password": ...}')
            data = await read_object(request, desk.config.max_body_bytes)
            username, password = data.get("username"), data.get("password")
            if not isinstance(username, str) or not isinstance(password, str):
                raise BadRequest(400, 'give "username" and "password" as strings')
        except BadRequest as exc:
            return exc.response()
        username = username.strip().lower()[:64]
        address = request.client.host if request.client else "unknown"
        if not await desk.throttle.allow(username, address):
            await desk.audit.record(username or "?", "login.throttled", f"from {address}")
            response = error(429, "too many sign-in attempts; wait a minute and try again")
            response.headers["Retry-After"] = str(desk.throttle.retry_after())
            return response
        account = await desk.accounts.verify(username, password)
        if account is None:
            await desk.audit.record(username or "?", "login.failed", f"from {address}")
            return error(401, FAILED)
        session_id, csrf = await desk.sessions.create(account.username)
        await desk.audit.record(account.username, "login", f"from {address}")
        response = JSONResponse({**account.to_dict(), "csrf": csrf}, headers={"Cache-Control": "no-store"})
        set_session_cookies(response, session_id, csrf, secure=secure, max_age=desk.config.session_seconds)
        return response

    async def logout(request: Request, who: Principal) -> Response:
        if who.session_id:
            await desk.sessions.end(who.session_id)
            await desk.audit.record(who.username, "logout")
        response = JSONResponse({"ok": True})
        clear_session_cookies(response, secure=secure)
        return response

    async def me(request: Request, who: Principal) -> Response:
        return JSONResponse({**who.account.to_dict(), "csrf": who.csrf, "via": who.via})

    return [
        Route("/api/auth/login", login, methods=["POST"]),
        Route("/api/auth/logout", guarded(desk.auth, logout), methods=["POST"]),
        Route("/api/auth/me", guarded(desk.auth, me), methods=["GET"]),
    ]
