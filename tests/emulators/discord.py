"""A local stand-in for Discord (REST API v10 + gateway), spoken to by the real discord.py.

REST: ``GET /api/v10/users/@me``, ``GET /api/v10/oauth2/applications/@me``,
``GET /api/v10/gateway[/bot]``, ``POST /api/v10/channels/{id}/messages`` (recorded; can
answer 429 first; a repeated ``nonce`` with ``enforce_nonce`` within ``nonce_window``
returns the earlier message, as Discord does), ``PATCH /api/v10/channels/{id}/messages/{id}``
(an edit: 404 Unknown Message for one it never posted; can answer 429 first),
``POST /api/v10/channels/{id}/typing``, ``PUT /api/v10/applications/{id}/commands``
(403 Missing Access without the ``applications.commands`` scope: ``commands_scope``),
the interaction callback ``POST /api/v10/interactions/{id}/{token}/callback`` (once per
interaction and within 3 seconds of it, else 400 "already acknowledged" / 404 "Unknown
interaction", as Discord answers; UPDATE_MESSAGE changes the clicked message's
components) and the deferred response's edit
``PATCH /api/v10/webhooks/{app}/{token}/messages/@original``.
Gateway at ``/ws``: HELLO, HEARTBEAT -> HEARTBEAT_ACK, IDENTIFY -> READY + GUILD_CREATE,
RESUME -> replay + RESUMED, and the dispatches a test injects (``message_create``;
INTERACTION_CREATE by ``click`` on a sent message's button and ``slash`` commands, and
``redeliver`` of one of them).
Frames are zlib-stream compressed when the client asks for ``compress=zlib-stream``
(discord.py's default), JSON text otherwise. Shapes follow discord.py's own parsers
(state.py, message.py, guild.py).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.emulators import serve_locally

MESSAGE_CONTENT = 1 << 15  # the privileged intent bit
HELLO, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, HEARTBEAT_ACK, DISPATCH = 10, 1, 2, 6, 7, 11, 0

BOT_ID = 900000000000000001
APP_ID = 900000000000000002
OWNER_ID = 900000000000000003
GUILD_ID = 910000000000000001
GUILD_CHANNEL_ID = 920000000000000001
ACK_DEADLINE = 3.0  # seconds Discord waits for an interaction's callback


def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "avatar": None,
        "global_name": name.title(),
        "bot": bot,
    }


CUSTOMER = user(930000000000000001, "alice")
OTHER_CUSTOMER = user(930000000000000002, "bob")
OTHER_BOT = user(930000000000000099, "helperbot", bot=True)


@dataclass
class SentMessage:
    channel_id: str
    content: str
    reference_id: str | None
    allowed_mentions: dict[str, Any] | None
    body: dict[str, Any] = field(repr=False)


@dataclass
class _Session:
    ws: web.WebSocketResponse
    compressor: Any | None  # zlib compressobj for zlib-stream, else None (JSON text frames)


class DiscordEmulator:
    def __init__(self, token: str = "emulator-token", retry_after: float = 0.1) -> None:
        self.token = token
        self.retry_after = retry_after
        self.bot_user = user(BOT_ID, "supportbot", bot=True)
        self.sent: list[SentMessage] = []
        self.typing: list[str] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.identifies = 0
        self.resumes = 0
        self.resume_replays = 1  # events before the client's seq replayed on RESUME (redelivery)
        self.revoked = False
        self.message_content_enabled = True  # the portal's privileged MESSAGE CONTENT switch
        self.intents: int | None = None  # what the last IDENTIFY asked for
        self._rate_limits: list[bool] = []  # pending 429s for POST messages; True = with Via header
        self._edit_rate_limits: list[bool] = []  # ... for PATCH (edits)
        self.messages: dict[str, dict[str, Any]] = {}  # the bot's messages by id, as they read now
        self.edits: list[tuple[str, str]] = []  # (message id, new content) of each accepted edit
        self.forbid_next = 0  # answer this many message sends with 403 Missing Permissions
        # enforce_nonce: a nonce seen in the last nonce_window seconds returns the earlier
        # message instead of creating one, as Discord does; the clock can be replaced
        self.nonce_window = 300.0
        self.clock: Callable[[], float] = time.monotonic
        self._nonces: dict[str, tuple[float, dict[str, Any]]] = {}
        self.commands_scope = True  # the bot was invited with applications.commands
        self.commands: list[dict[str, Any]] = []  # registered application commands
        self.interactions: dict[str, dict[str, Any]] = {}  # dispatched: token, when, callback type
        self.callbacks: list[tuple[str, int, int]] = []  # (interaction id, callback type, status)
        self.originals: dict[str, dict[str, Any]] = {}  # deferred responses' edits, by token
        self.nonce_repeats = 0  # sends answered with an earlier message
        self._ids = itertools.count(940000000000000001)
        self._sessions: list[_Session] = []
        self._session_id = ""
        self._seq = 0
        self._log: list[dict[str, Any]] = []  # dispatched frames of the current session
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> DiscordEmulator:
        app = web.Application()
        api = "/api/v10"
        app.router.add_get(f"{api}/users/@me", self._me)
        app.router.add_get(f"{api}/oauth2/applications/@me", self._application)
        app.router.add_get(f"{api}/gateway", self._gateway_info)
        app.router.add_get(f"{api}/gateway/bot", self._gateway_info)
        app.router.add_post(f"{api}/channels/{{channel_id}}/messages", self._create_message)
        app.router.add_patch(f"{api}/channels/{{channel_id}}/messages/{{message_id}}", self._edit_message)
        app.router.add_post(f"{api}/channels/{{channel_id}}/typing", self._typing)
        app.router.add_put(f"{api}/applications/{{app_id}}/commands", self._put_commands)
        app.router.add_post(f"{api}/interactions/{{interaction_id}}/{{token}}/callback", self._callback)
        app.router.add_patch(f"{api}/webhooks/{{app_id}}/{{token}}/messages/@original", self._edit_original)
        app.router.add_get("/ws", self._gateway)
        self._runner, self.port = await serve_locally(app)
        return self

    async def stop(self) -> None:
        for session in list(self._sessions):
            await session.ws.close()
        if self._runner:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    # -- test controls -----------------------------------------------------------------
    def rate_limit_next(self, count: int = 1, *, via: bool = True) -> None:
        """The next ``count`` message sends get 429. ``via`` adds the ``Via`` header that
        tells discord.py the 429 came from Discord (it then waits and retries itself);
        without it discord.py raises HTTPException(429) to the caller."""
        self._rate_limits.extend([via] * count)

    def rate_limit_next_edit(self, count: int = 1, *, via: bool = False) -> None:
        """The next ``count`` edits get 429 (see :meth:`rate_limit_next`)."""
        self._edit_rate_limits.extend([via] * count)

    def visible(self, channel_id: int | str) -> list[str]:
        """The bot's messages in a channel as the customer sees them now, oldest first."""
        return [m["content"] for m in self.messages.values() if m["channel_id"] == str(channel_id)]

    def replies_to(self, message_id: str) -> list[SentMessage]:
        return [m for m in self.sent if m.reference_id == message_id]

    @property
    def rate_limited(self) -> int:
        return sum(1 for method, path, status in self.requests if status == 429)

    @property
    def connected(self) -> bool:
        return any(not s.ws.closed for s in self._sessions) and bool(self._session_id)

    async def message_create(
        self,
        content: str,
        *,
        author: dict[str, Any] = CUSTOMER,
        guild: bool = False,
        mention_bot: bool = False,
        attachments: int = 0,
        stickers: int = 0,
        message_id: str | None = None,
    ) -> str:
        """Dispatch MESSAGE_CREATE (a DM, or a message in the guild's #support channel);
        returns the message id. Reusing ``message_id`` redelivers the same message."""
        message_id = message_id or str(next(self._ids))
        channel_id = GUILD_CHANNEL_ID if guild else self.dm_channel_id(author)
        data = self.message_payload(message_id, channel_id, author, content, guild=guild)
        if mention_bot:
            data["mentions"] = [self.bot_user]
        data["attachments"] = [
            {
                "id": str(next(self._ids)),
                "filename": f"photo{i}.png",
                "size": 2048,
                "content_type": "image/png",
                "url": f"https://cdn.discordapp.com/attachments/{channel_id}/{i}/photo{i}.png",
                "proxy_url": f"https://media.discordapp.net/attachments/{channel_id}/{i}/photo{i}.png",
                "width": 64,
                "height": 64,
            }
            for i in range(attachments)
        ]
        data["sticker_items"] = [
            {"id": str(next(self._ids)), "name": "wave", "format_type": 1} for _ in range(stickers)
        ]
        await self.dispatch("MESSAGE_CREATE", data)
        return message_id

    async def click(
        self,
        sent: SentMessage,
        label: str,
        *,
        author: dict[str, Any] = CUSTOMER,
        interaction_id: str | None = None,
    ) -> str:
        """INTERACTION_CREATE for a click on the button ``label`` of a message the bot sent;
        returns the interaction id (pass it again to redeliver the same interaction)."""
        message = next(m for m in self.messages.values() if m["content"] == sent.content)
        buttons = [c for row in message.get("components") or [] for c in row.get("components", [])]
        custom_id = next(b["custom_id"] for b in buttons if b.get("label") == label)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, data, author, int(sent.channel_id), message=message)

    async def slash(
        self,
        name: str,
        *,
        author: dict[str, Any] = CUSTOMER,
        guild: bool = False,
        interaction_id: str | None = None,
    ) -> str:
        """INTERACTION_CREATE for the application command ``/name``; returns its id."""
        channel_id = GUILD_CHANNEL_ID if guild else self.dm_channel_id(author)
        data = {"id": str(APP_ID + 10), "name": name, "type": 1}
        return await self._interact(2, data, author, channel_id)

    async def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        author: dict[str, Any],
        channel_id: int,
        message: dict[str, Any] | None = None,
    ) -> str:
        interaction_id = str(next(self._ids))
        known = self.interactions[interaction_id] = {
            "token": "itoken-" + uuid.uuid4().hex,
            "at": self.clock(),
            "acked": 0,
        }
        guild = channel_id == GUILD_CHANNEL_ID
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "channel_id": str(channel_id),
            "channel": {
                "id": str(channel_id),
                "type": 0 if guild else 1,
                **({"guild_id": str(GUILD_ID)} if guild else {}),
            },
            "token": known["token"],
            "version": 1,
            "app_permissions": "0",
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "authorizing_integration_owners": {"0": str(GUILD_ID)} if guild else {"1": author["id"]},
            "context": 0 if guild else 1,
        }
        if guild:
            payload["guild_id"] = str(GUILD_ID)
            payload["member"] = {
                "user": author,
                "roles": [],
                "joined_at": _now(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "0",
            }
        else:
            payload["user"] = author
        known["channel_id"] = channel_id
        if message is not None:
            payload["message"] = message
            known["message_id"] = message["id"]
        known["payload"] = payload
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction_id

    async def redeliver(self, interaction_id: str) -> None:
        """Dispatch an interaction again, exactly as it was (what a resumed session does)."""
        await self.dispatch("INTERACTION_CREATE", self.interactions[interaction_id]["payload"])

    async def message_update(self, message_id: str, content: str, *, guild: bool = False) -> None:
        channel_id = GUILD_CHANNEL_ID if guild else self.dm_channel_id(CUSTOMER)
        data = self.message_payload(message_id, channel_id, CUSTOMER, content, guild=guild)
        data["edited_timestamp"] = _now()
        await self.dispatch("MESSAGE_UPDATE", data)

    async def request_reconnect(self) -> None:
        """Op 7 RECONNECT: the client drops the socket and RESUMEs on resume_gateway_url."""
        for session in self._sessions:
            if not session.ws.closed:
                await self._send(session, {"op": RECONNECT, "d": None})

    def dm_channel_id(self, author: dict[str, Any]) -> int:
        return 950000000000000000 + int(author["id"]) % 1000

    def message_payload(
        self, message_id: str, channel_id: int, author: dict[str, Any], content: str, *, guild: bool
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if guild:
            data["guild_id"] = str(GUILD_ID)
            data["member"] = {"roles": [], "joined_at": _now(), "deaf": False, "mute": False, "flags": 0}
        return data

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self._seq, "d": data}
        self._log.append(frame)
        for session in self._sessions:
            if not session.ws.closed:
                await self._send(session, frame)

    # -- REST --------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return not self.revoked and request.headers.get("Authorization") == f"Bot {self.token}"

    def _json(
        self, request: web.Request, data: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.requests.append((request.method, request.path, status))
        # discord.py parses JSON only when Content-Type is exactly application/json
        return web.Response(
            status=status,
            body=json.dumps(data).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def _unauthorized(self, request: web.Request) -> web.Response:
        return self._json(request, {"message": "401: Unauthorized", "code": 0}, 401)

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        return self._json(request, {**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        return self._json(
            request,
            {
                "id": str(APP_ID),
                "name": "Support Bot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": user(OWNER_ID, "owner"),
                "verify_key": "00" * 32,
                "flags": 0,
                "team": None,
            },
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        return self._json(
            request,
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            },
        )

    async def _create_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        channel_id = request.match_info["channel_id"]
        limits = {"X-RateLimit-Limit": "5", "X-RateLimit-Bucket": f"messages-{channel_id}"}
        if self._rate_limits:
            return self._too_many(request, limits, self._rate_limits.pop(0))
        if self.forbid_next > 0:
            self.forbid_next -= 1
            return self._json(request, {"message": "Missing Permissions", "code": 50013}, 403)
        body = await request.json()
        nonce = str(body["nonce"]) if body.get("nonce") is not None else None
        if nonce is not None and body.get("enforce_nonce"):
            earlier = self._nonces.get(nonce)
            if earlier is not None and self.clock() - earlier[0] < self.nonce_window:
                self.nonce_repeats += 1
                return self._json(request, earlier[1])
        reference = (body.get("message_reference") or {}).get("message_id")
        self.sent.append(
            SentMessage(
                channel_id,
                body.get("content", ""),
                str(reference) if reference else None,
                body.get("allowed_mentions"),
                body,
            )
        )
        message = self.message_payload(
            str(next(self._ids)),
            int(channel_id),
            self.bot_user,
            body.get("content", ""),
            guild=int(channel_id) == GUILD_CHANNEL_ID,
        )
        message.pop("member", None)
        if reference:
            message["type"] = 19  # reply
            message["message_reference"] = body["message_reference"]
        if body.get("components"):
            message["components"] = body["components"]
        if nonce is not None:
            message["nonce"] = nonce
            self._nonces[nonce] = (self.clock(), message)
        self.messages[message["id"]] = message
        return self._json(
            request,
            message,
            headers={**limits, "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "1.0"},
        )

    async def _edit_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        channel_id = request.match_info["channel_id"]
        limits = {"X-RateLimit-Limit": "5", "X-RateLimit-Bucket": f"edits-{channel_id}"}
        if self._edit_rate_limits:
            return self._too_many(request, limits, self._edit_rate_limits.pop(0))
        message = self.messages.get(request.match_info["message_id"])
        if message is None or message["channel_id"] != channel_id:
            return self._json(request, {"message": "Unknown Message", "code": 10008}, 404)
        body = await request.json()
        if "content" in body:
            message["content"] = body["content"] or ""
            message["edited_timestamp"] = _now()
            self.edits.append((message["id"], message["content"]))
        if "components" in body:
            message["components"] = body["components"]
        return self._json(
            request,
            message,
            headers={**limits, "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "1.0"},
        )

    def _too_many(self, request: web.Request, limits: dict[str, str], via: bool) -> web.Response:
        """429 as Discord answers it; ``via`` (the proxy header) makes discord.py wait and retry."""
        headers = {
            **limits,
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(self.retry_after),
            "X-RateLimit-Scope": "user",
            "Retry-After": str(self.retry_after),
        }
        if via:
            headers["Via"] = "1.1 google"
        return self._json(
            request,
            {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": False},
            429,
            headers,
        )

    async def _typing(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        self.typing.append(request.match_info["channel_id"])
        self.requests.append((request.method, request.path, 204))
        return web.Response(status=204)

    async def _put_commands(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        if not self.commands_scope:
            return self._json(request, {"message": "Missing Access", "code": 50001}, 403)
        self.commands = await request.json()
        return self._json(
            request,
            [
                {**c, "id": str(APP_ID + i), "application_id": str(APP_ID), "version": "1"}
                for i, c in enumerate(self.commands, 1)
            ],
        )

    async def _callback(self, request: web.Request) -> web.Response:
        interaction_id, token = request.match_info["interaction_id"], request.match_info["token"]
        body = await request.json()
        known = self.interactions.get(interaction_id)
        if known is None or known["token"] != token or self.clock() - known["at"] > ACK_DEADLINE:
            status, error = 404, {"message": "Unknown interaction", "code": 10062}
        elif known["acked"]:
            status, error = 400, {"message": "Interaction has already been acknowledged.", "code": 40060}
        else:
            status, error = 204, {}
            known["acked"] = body["type"]
            if body["type"] == 7 and known.get("message_id") in self.messages:
                self.messages[known["message_id"]]["components"] = body.get("data", {}).get("components", [])
        self.callbacks.append((interaction_id, int(body["type"]), status))
        if status == 204:
            self.requests.append((request.method, request.path, 204))
            return web.Response(status=204)
        return self._json(request, error, status)

    async def _edit_original(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        known = next((i for i in self.interactions.values() if i["token"] == token), None)
        if known is None or known["acked"] != 5:  # only a deferred response is there to edit
            return self._json(request, {"message": "Unknown Webhook", "code": 10015}, 404)
        body = await request.json()
        self.originals[token] = body
        channel_id = int(known["channel_id"])
        message = self.message_payload(
            str(next(self._ids)),
            channel_id,
            self.bot_user,
            body.get("content", ""),
            guild=channel_id == GUILD_CHANNEL_ID,
        )
        message.pop("member", None)
        return self._json(request, message)

    # -- gateway ------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        zlib_stream = request.query.get("compress") == "zlib-stream"
        session = _Session(ws, zlib.compressobj() if zlib_stream else None)
        self._sessions.append(session)
        await self._send(session, {"op": HELLO, "d": {"heartbeat_interval": 41250}})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                await self._on_frame(session, payload["op"], payload.get("d"))
        finally:
            self._sessions.remove(session)
        return ws

    async def _on_frame(self, session: _Session, op: int, data: Any) -> None:
        if op == HEARTBEAT:
            await self._send(session, {"op": HEARTBEAT_ACK, "d": None})
        elif op == IDENTIFY:
            if self.revoked or data.get("token") != self.token:
                await session.ws.close(code=4004, message=b"Authentication failed.")
                return
            self.intents = data.get("intents")
            if not self.message_content_enabled and (self.intents or 0) & MESSAGE_CONTENT:
                await session.ws.close(code=4014, message=b"Disallowed intent(s).")
                return
            self.identifies += 1
            self._session_id, self._seq, self._log = uuid.uuid4().hex, 0, []
            await self.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": {**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0},
                    "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                    "session_id": self._session_id,
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": str(APP_ID), "flags": 0},
                    "private_channels": [],
                    "relationships": [],
                },
            )
            await self.dispatch(
                "GUILD_CREATE",
                {
                    "id": str(GUILD_ID),
                    "name": "Shop",
                    "unavailable": False,
                    "member_count": 2,
                    "owner_id": str(OWNER_ID),
                    "roles": [],
                    "emojis": [],
                    "stickers": [],
                    "features": [],
                    "channels": [
                        {
                            "id": str(GUILD_CHANNEL_ID),
                            "type": 0,
                            "name": "support",
                            "position": 0,
                            "guild_id": str(GUILD_ID),
                            "permission_overwrites": [],
                        }
                    ],
                    "members": [],
                    "threads": [],
                    "voice_states": [],
                    "presences": [],
                },
            )
        elif op == RESUME:
            if data.get("session_id") != self._session_id or data.get("token") != self.token:
                await self._send(session, {"op": 9, "d": False})  # INVALID_SESSION
                return
            self.resumes += 1
            since = (data.get("seq") or 0) - self.resume_replays
            for frame in [f for f in self._log if f["s"] > since]:
                await self._send(session, frame)
            self._seq += 1
            await self._send(session, {"op": DISPATCH, "t": "RESUMED", "s": self._seq, "d": {}})

    async def _send(self, session: _Session, frame: dict[str, Any]) -> None:
        raw = json.dumps(frame)
        if session.compressor is None:
            await session.ws.send_str(raw)
        else:  # zlib-stream: one shared context, each message ends with a sync flush
            await session.ws.send_bytes(
                session.compressor.compress(raw.encode()) + session.compressor.flush(zlib.Z_SYNC_FLUSH)
            )


def _now() -> str:
    return datetime.now(UTC).isoformat()
