"""What every webhook endpoint does around its platform's update.

A platform POSTs each update and resends it until it gets a 2xx. So the shared secret is
checked first (401 when missing, 403 when wrong, compared in constant time), and an
update that cannot be queued because Redis is down is answered 503: the platform resends
it later, and its event id makes the resend idempotent. Bodies are read within a limit
by ``adapters.webjson``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.base import REDIS_DOWN
from adapters.webjson import BadRequest, error

log = logging.getLogger(__name__)


def webhook_routes(path: str | None, endpoint: Callable[[Request], Awaitable[Response]]) -> list[BaseRoute]:
    """The POST route a platform delivers updates to; none when ``path`` is None (the
    platform is read another way: long polling, a socket)."""
    return [Route(path, endpoint, methods=["POST"])] if path else []


def check_secret(request: Request, header: str, secret: str) -> None:
    """BadRequest(401/403) unless the request's ``header`` carries ``secret``."""
    given = request.headers.get(header)
    if given is None:
        raise BadRequest(401, f"missing {header}")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise BadRequest(403, f"wrong {header}")


async def queued(intake: Awaitable[object], what: str) -> Response:
    """200 once ``intake`` (an ``accept(..., hold=False)``) has queued the update; 503 while
    Redis is down, so the platform resends ``what`` later."""
    try:
        await intake
    except REDIS_DOWN as exc:
        log.warning("%s not queued (%s); the platform will resend it", what, exc)
        return error(503, "queue unavailable")
    return JSONResponse({"ok": True})
