"""The request helpers the web chat, the webhooks and the desk API share (through a real
Starlette app; only the network is left out, by httpx's ASGI transport)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.webjson import BadRequest, answers_bad_requests, bearer_token, require_json


class Endpoints:
    """Endpoints written as methods, the way adapters write them."""

    @answers_bad_requests
    async def token(self, request: Request) -> Response:
        return JSONResponse({"token": bearer_token(request)})

    @answers_bad_requests
    async def json_only(self, request: Request) -> Response:
        require_json(request, "send the note as JSON")
        return JSONResponse({"ok": True})


@answers_bad_requests
async def teapot(request: Request) -> Response:
    raise BadRequest(418, "no coffee here")


def client() -> httpx.AsyncClient:
    endpoints = Endpoints()
    app = Starlette(
        routes=[
            Route("/token", endpoints.token),
            Route("/json", endpoints.json_only, methods=["POST"]),
            Route("/teapot", teapot),
        ]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_bad_request_raised_anywhere_is_the_answer() -> None:
    async with client() as http:
        answer = await http.get("/teapot")
    assert answer.status_code == 418 and answer.json() == {"error": "no coffee here"}


async def test_bearer_token_tells_no_header_from_a_useless_one() -> None:
    async with client() as http:
        none = await http.get("/token")
        empty = await http.get("/token", headers={"Authorization": ""})
        basic = await http.get("/token", headers={"Authorization": "Basic dXNlcjpwdw=="})
        blank = await http.get("/token", headers={"Authorization": "Bearer   "})
        token = await http.get("/token", headers={"Authorization": "bearer abc123 "})
    assert [r.json()["token"] for r in (none, empty, basic, blank, token)] == [None, None, "", "", "abc123"]


async def test_require_json_refuses_forms_with_415() -> None:
    async with client() as http:
        form = await http.post("/json", data={"text": "hi"})
        typed = await http.post("/json", json={"text": "hi"})
        charset = await http.post(
            "/json", content=b"{}", headers={"Content-Type": "Application/JSON; charset=utf-8"}
        )
    assert form.status_code == 415
    assert form.json()["error"] == "send the note as JSON (Content-Type: application/json)"
    assert (typed.status_code, charset.status_code) == (200, 200)
