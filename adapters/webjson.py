"""Reading JSON requests safely, for the web chat, the webhooks and the desk API.

A body is refused with 413 as soon as it is known to be over the limit: from its
Content-Length before anything is read, or while counting a chunked stream, so a 10 MB
upload is never held in memory. Nesting deeper than ``MAX_DEPTH`` is a 400 (Python's
parser would otherwise raise RecursionError, a 500). Names and ids lose control, format
and surrogate characters, so nothing invisible or unencodable reaches Redis or a page.
An endpoint wrapped in :func:`answers_bad_requests` raises :class:`BadRequest` wherever
it finds a problem and the caller gets that one line, never a 500.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

MAX_DEPTH = 32
P = ParamSpec("P")


class BadRequest(Exception):
    """A request the client must fix: ``status`` and one line saying what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return error(self.status, self.message)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def answers_bad_requests(endpoint: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Wrap an endpoint (a function or a method) so a BadRequest it raises becomes its answer."""

    @functools.wraps(endpoint)
    async def answered(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except BadRequest as exc:
            return exc.response()

    return answered


def require_json(request: Request, hint: str = "send the body as JSON") -> None:
    """BadRequest(415) unless the body is declared JSON: a browser form cannot send that
    cross-site without a preflight, so a cookie riding along proves nothing forged."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise BadRequest(415, f"{hint} (Content-Type: application/json)")


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None without the header, and ""
    when the header is there but holds no bearer token (a caller to refuse, not a browser)."""
    header = request.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or BadRequest(413) without reading past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise BadRequest(413, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"request body over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest(400, "the client closed the request") from None
    return b"".join(chunks)


async def read_json(request: Request, limit: int, *, empty: Any = None) -> Any:
    """The parsed JSON body (``empty`` when there is none); BadRequest on bad input."""
    body = await read_body(request, limit)
    if not body.strip():
        return empty
    if _too_deep(body):
        raise BadRequest(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(400, "body must be JSON") from None
    except RecursionError:  # belt and braces: _too_deep already caught it
        raise BadRequest(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None


async def read_object(request: Request, limit: int) -> dict[str, Any]:
    data = await read_json(request, limit, empty={})
    if not isinstance(data, dict):
        raise BadRequest(400, "body must be a JSON object")
    return data


def _too_deep(body: bytes) -> bool:
    """Whether brackets outside strings nest deeper than MAX_DEPTH (one linear scan)."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}
_SPACES = re.compile(r"\s+")


def clean_name(value: object, limit: int) -> str:
    """A one-line id or display name: no control/format/surrogate characters, spaces
    collapsed, at most ``limit`` characters."""
    kept = "".join(
        " " if ch in "\t\n\r" else ch
        for ch in str(value)
        if ch in "\t\n\r" or unicodedata.category(ch) not in _INVISIBLE
    )
    return _SPACES.sub(" ", unicodedata.normalize("NFC", kept)).strip()[:limit]
