"""A local stand-in for Slack, spoken to by the real slack_sdk / slack-bolt.

Web API (``{url}auth.test``, ``chat.postMessage`` (with Block Kit ``blocks``),
``chat.update`` (``message_not_found`` for a ``ts`` it never posted),
``apps.connections.open``) for one or more apps (bots) in one workspace (``add_app``),
with Bearer-token checks answered like Slack (HTTP 200 ``{"ok": false, "error":
"invalid_auth"}``), switches to answer the next ``chat.postMessage`` or ``chat.update``
calls with HTTP 429 and ``Retry-After``, and a Socket Mode WebSocket (``hello``,
``events_api`` envelopes, acknowledgements recorded). :func:`signed_event_request` signs
Events API bodies the way Slack does (v0 HMAC-SHA256 over ``v0:{timestamp}:{body}``);
:func:`signed_form_request` signs the form-encoded bodies of interactivity (``payload=`` a
:func:`block_actions_body`, the click on a posted message's button) and slash commands
(:func:`slash_command_body`), with the retry headers when asked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

from tests.emulators import serve_locally


@dataclass
class PostedMessage:
    channel: str
    text: str
    thread_ts: str | None
    raw: dict[str, Any] = field(default_factory=dict)
    token: str = ""  # which app's bot token posted it
    ts: str = ""


@dataclass(frozen=True)
class App:
    """One Slack app installed in the workspace: its bot token and its bot's ids."""

    token: str
    bot_user_id: str
    bot_id: str


class SlackEmulator:
    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T0001",
    ) -> None:
        self._token = token
        self.app_token = app_token
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.posted: list[PostedMessage] = []
        self.apps: dict[str, App] = {token: App(token, bot_user_id, bot_id)}  # bot token -> app
        self.rate_limit_next = 0  # answer this many chat.postMessage calls with 429
        self.retry_after = 1
        self.rate_limited = 0  # how many 429s were sent
        self.refuse_next: list[str] = []  # error codes for the next chat.postMessage calls
        self.rate_limit_next_update = 0  # answer this many chat.update calls with 429
        self.messages: dict[str, PostedMessage] = {}  # the bot's messages by ts, as they read now
        self.updates: list[tuple[str, str]] = []  # (ts, new text) of each accepted chat.update
        self.updated: list[dict[str, Any]] = []  # the arguments of each accepted chat.update
        self._ts = itertools.count(int(time.time()) * 1_000_000)
        self.calls: list[str] = []  # Web API method names, in order
        self.acks: list[str] = []  # Socket Mode envelope ids acknowledged by the client
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def visible(self, channel: str) -> list[str]:
        """The bot's messages in ``channel`` as people see them now, oldest first."""
        return [m.text for _ts, m in sorted(self.messages.items()) if m.channel == channel]

    @property
    def token(self) -> str:
        """The first app's bot token; setting it rotates that token (the old one is revoked)."""
        return self._token

    @token.setter
    def token(self, value: str) -> None:
        first = self.apps.pop(self._token)
        self._token = value
        self.apps[value] = App(value, first.bot_user_id, first.bot_id)

    @property
    def url(self) -> str:
        """The Web API base URL (SLACK_API_URL)."""
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> SlackEmulator:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        self._runner, self.port = await serve_locally(app)
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> SlackEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- Web API -----------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        args = await _read_args(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or str(args.get("token", ""))
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if method == "apps.connections.open" and token != self.app_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        caller = self.apps.get(token)
        if method != "apps.connections.open" and caller is None:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test" and caller is not None:
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://emulated.slack.com/",
                    "team": "Emulated",
                    "user": "chatbot",
                    "team_id": self.team_id,
                    "user_id": caller.bot_user_id,
                    "bot_id": caller.bot_id,
                    "is_enterprise_install": False,
                }
            )
        if method == "chat.postMessage" and caller is not None:
            return self._post_message(args, caller)
        if method == "chat.update":
            return self._update(args)
        if method == "apps.connections.open":
            return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    def add_app(self, token: str, bot_user_id: str, bot_id: str) -> App:
        """Install another app (another bot) in the emulated workspace."""
        self.apps[token] = App(token, bot_user_id, bot_id)
        return self.apps[token]

    def posted_by(self, token: str) -> list[PostedMessage]:
        return [p for p in self.posted if p.token == token]

    def _post_message(self, args: dict[str, Any], caller: App) -> web.Response:
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return self._too_many()
        if self.refuse_next:
            return web.json_response({"ok": False, "error": self.refuse_next.pop(0)})
        channel, text = str(args.get("channel") or ""), str(args.get("text") or "")
        if not channel:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if not text:
            return web.json_response({"ok": False, "error": "no_text"})
        thread_ts = args.get("thread_ts")
        tick = next(self._ts)
        ts = f"{tick // 1_000_000}.{tick % 1_000_000:06d}"  # unique, like Slack's
        posted = PostedMessage(
            channel, text, str(thread_ts) if thread_ts else None, dict(args), caller.token, ts
        )
        self.posted.append(posted)
        self.messages[ts] = PostedMessage(channel, text, posted.thread_ts, dict(args), caller.token, ts)
        return web.json_response(
            {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {
                    "type": "message",
                    "text": text,
                    "user": caller.bot_user_id,
                    "bot_id": caller.bot_id,
                    "ts": ts,
                },
            }
        )

    def _update(self, args: dict[str, Any]) -> web.Response:
        if self.rate_limit_next_update > 0:
            self.rate_limit_next_update -= 1
            return self._too_many()
        channel, ts, text = (
            str(args.get("channel") or ""),
            str(args.get("ts") or ""),
            str(args.get("text") or ""),
        )
        message = self.messages.get(ts)
        if message is None or message.channel != channel:
            return web.json_response({"ok": False, "error": "message_not_found"})
        if not text:
            return web.json_response({"ok": False, "error": "no_text"})
        message.text = text
        self.updates.append((ts, text))
        self.updated.append(dict(args))
        return web.json_response({"ok": True, "channel": channel, "ts": ts, "text": text})

    def _too_many(self) -> web.Response:
        self.rate_limited += 1
        return web.json_response(
            {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(self.retry_after)}
        )

    # -- Socket Mode -------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0001"}})
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if "envelope_id" in data:
                        self.acks.append(data["envelope_id"])
        finally:
            self._sockets.remove(ws)
        return ws

    async def push_event(self, body: dict[str, Any], retry_attempt: int = 0) -> str:
        """Deliver an Events API body over Socket Mode; returns the envelope id."""
        for _ in range(200):
            if self._sockets:
                break
            await asyncio.sleep(0.025)
        envelope_id = str(uuid.uuid4())
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
                "payload": body,
            }
        )
        return envelope_id


async def _read_args(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        return dict(await request.json())
    return dict(await request.post())


def event_body(
    event: dict[str, Any], *, event_id: str | None = None, team_id: str = "T0001"
) -> dict[str, Any]:
    """An Events API ``event_callback`` envelope around ``event``."""
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": "A0001",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": "UBOT", "is_bot": True}],
    }


def signed_event_request(
    body: dict[str, Any], signing_secret: str, *, timestamp: int | None = None, retry_num: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of an Events API POST, signed like Slack signs it."""
    raw = json.dumps(body).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=raw),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return raw, headers


def block_actions_body(
    posted: PostedMessage, label: str, *, user: str = "U0001", trigger_id: str | None = None
) -> dict[str, Any]:
    """The ``block_actions`` payload of a click on the button ``label`` of a posted message."""
    buttons = [e for b in posted.raw.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]
    button = next(e for e in buttons if e["text"]["text"] == label)
    message = {"type": "message", "user": "UBOT", "bot_id": "BBOT", "text": posted.text, "ts": posted.ts}
    message |= {"blocks": posted.raw.get("blocks")} | (
        {"thread_ts": posted.thread_ts} if posted.thread_ts else {}
    )
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "ada", "name": "ada", "team_id": "T0001"},
        "api_app_id": "A0001",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": posted.ts,
            "channel_id": posted.channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}",
        "team": {"id": "T0001", "domain": "emulated"},
        "channel": {"id": posted.channel, "name": "directmessage"},
        "message": message,
        "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
        "actions": [
            {
                "action_id": button["action_id"],
                "block_id": "b1",
                "text": button["text"],
                "value": button["value"],
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def slash_command_body(
    command: str,
    text: str = "",
    *,
    channel: str = "D0001",
    user: str = "U0001",
    trigger_id: str | None = None,
) -> dict[str, str]:
    """The form fields of a slash command invocation."""
    return {
        "token": "legacy-verification-token",
        "team_id": "T0001",
        "team_domain": "emulated",
        "channel_id": channel,
        "channel_name": "directmessage" if channel.startswith("D") else "support",
        "user_id": user,
        "user_name": "ada",
        "command": command,
        "text": text,
        "api_app_id": "A0001",
        "response_url": "https://hooks.slack.com/commands/T0001/1/abc",
        "trigger_id": trigger_id or f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}",
    }


def signed_form_request(
    fields: dict[str, str], signing_secret: str, *, retry_num: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a form-encoded POST (interactivity: ``{"payload":
    json}``; slash commands: their fields), signed like Slack signs it."""
    raw = urllib.parse.urlencode(fields).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=raw),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return raw, headers
