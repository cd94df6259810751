"""Who is calling the desk API: a signed-in browser (session cookie) or a script (API token).

Sessions are random ids in an http-only, SameSite=Strict cookie; Redis keeps only their
SHA-256 with the account name and a CSRF token. Every state-changing request made with
the cookie must repeat that CSRF token in the ``X-CSRF-Token`` header (double submit: the
page reads it from a cookie a foreign site cannot read). Bearer tokens are never sent by
a browser on its own, so they need no CSRF token. The account is re-read per request: a
disabled account loses its sessions at once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import Response

from adapters.webjson import BadRequest, error
from bots.desk.accounts import Account, Accounts, Role, desk_key
from core import cluster
from core.errors import ChatbotError, ConfigError, ModelMissing, TicketNotFound, TicketStateError
from core.keys import Keys

SESSION_COOKIE = "desk_session"
CSRF_COOKIE = "desk_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True, slots=True)
class Principal:
    account: Account
    via: str  # "session" or "token"
    csrf: str = ""
    session_id: str = ""

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def is_admin(self) -> bool:
        return self.account.role is Role.ADMIN


class Sessions:
    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_seconds = ttl_seconds

    def _key(self, session_id: str) -> str:
        return desk_key(self.keys, "session", hashlib.sha256(session_id.encode()).hexdigest())

    async def create(self, username: str) -> tuple[str, str]:
        """A new (session id, CSRF token) for ``username``."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        record = json.dumps({"username": username, "csrf": csrf, "at": time.time()})
        index = desk_key(self.keys, "sessions-of", username)
        async with cluster.on_slot(self.redis, index).pipeline(transaction=True) as pipe:
            pipe.set(self._key(session_id), record, ex=self.ttl_seconds)
            pipe.sadd(index, self._key(session_id))
            pipe.expire(index, self.ttl_seconds)
            await pipe.execute()
        return session_id, csrf

    async def get(self, session_id: str) -> tuple[str, str] | None:
        """(username, csrf) of a live session."""
        raw = await self.redis.get(self._key(session_id)) if session_id else None
        if raw is None:
            return None
        data = json.loads(raw)
        return str(data["username"]), str(data["csrf"])

    async def end(self, session_id: str) -> None:
        await self.redis.delete(self._key(session_id))

    async def end_all(self, username: str) -> None:
        """Sign an account out everywhere (after a password reset)."""
        index = desk_key(self.keys, "sessions-of", username)
        keys = await self.redis.smembers(index)
        await self.redis.delete(index, *keys)


class Auth:
    def __init__(self, accounts: Accounts, sessions: Sessions) -> None:
        self.accounts = accounts
        self.sessions = sessions

    async def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            account = await self.accounts.token_owner(token.strip())
            return Principal(account, "token") if account else None
        session_id = request.cookies.get(SESSION_COOKIE, "")
        found = await self.sessions.get(session_id)
        if found is None:
            return None
        account = await self.accounts.get(found[0])
        if account is None or account.disabled:
            return None
        return Principal(account, "session", csrf=found[1], session_id=session_id)


Handler = Callable[[Request, Principal], Awaitable[Response]]

# What the framework's own errors mean to an HTTP caller (ClaimConflict is a TicketStateError).
ERROR_STATUS: tuple[tuple[type[ChatbotError], int], ...] = (
    (TicketNotFound, 404),
    (TicketStateError, 409),
    (ConfigError, 400),
    (ModelMissing, 503),  # the preview needs the bot's models built (`chatbot models build`)
)


def guarded(auth: Auth, handler: Handler, *, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a desk handler: 401 anonymous, 403 wrong role or missing CSRF token, bad input
    and known errors as 4xx, and ``no-store`` on everything it answers."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        principal = await auth.principal(request)
        if principal is None:
            response: Response = error(401, "sign in first (POST /api/auth/login) or send an API token")
        elif admin and not principal.is_admin:
            response = error(403, "this needs an admin account")
        elif (
            principal.via == "session"
            and request.method not in SAFE_METHODS
            and not _csrf_ok(request, principal)
        ):
            response = error(
                403, f"missing or wrong CSRF token (send the {CSRF_COOKIE} cookie's value in X-CSRF-Token)"
            )
        else:
            response = await _answer(handler, request, principal)
        response.headers["Cache-Control"] = "no-store"
        return response

    return endpoint


async def _answer(handler: Handler, request: Request, principal: Principal) -> Response:
    try:
        return await handler(request, principal)
    except BadRequest as exc:
        return exc.response()
    except ChatbotError as exc:
        status = next((code for cls, code in ERROR_STATUS if isinstance(exc, cls)), None)
        if status is None:
            raise
        return error(status, str(exc))


def _csrf_ok(request: Request, principal: Principal) -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent.encode(), principal.csrf.encode())


def set_session_cookies(
    response: Response, session_id: str, csrf: str, *, secure: bool, max_age: int
) -> None:
    response.set_cookie(
        SESSION_COOKIE, session_id, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/"
    )
    # Readable by the desk's own scripts (double submit), never sent to another site.
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/"
    )


def clear_session_cookies(response: Response, *, secure: bool) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(
            name, path="/", secure=secure, httponly=name == SESSION_COOKIE, samesite="strict"
        )
