"""The web app as `chatbot run` composes it, in-process, for the web-chat and desk tests:
real Redis, the real engine with scripted models, the web chat, the desk and its
tickets; `serving` puts it on a real local port (push channels and the browser need one).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette

from adapters.webchat import WebChatAdapter, WebChatConfig
from bots.desk.accounts import Role
from bots.desk.app import Desk, DeskConfig
from bots.serve import build_app
from core.bus import Bus
from core.engine import ModelProvider
from core.history import History
from core.keys import Keys
from core.messages import ConversationKey
from core.persona import Persona, PersonaStore
from core.tickets import Ticket, Tickets
from tests.scripted_models import build_engine

PASSWORD = "correct horse battery"


@dataclass
class Stack:
    app: Starlette
    web: WebChatAdapter
    desk: Desk
    tickets: Tickets
    history: History
    personas: PersonaStore
    bus: Bus
    redis: aioredis.Redis
    keys: Keys

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://desk.test")

    async def account(self, name: str, role: Role = Role.AGENT) -> str:
        await self.desk.accounts.create(name, role, PASSWORD)
        return await self.desk.accounts.create_token(name)

    async def open_ticket(self, user: str, platform: str = "web", name: str = "") -> Ticket:
        """Hand a conversation to the team the way the engine does."""
        conv = ConversationKey("support", platform, user, user)
        async with self.redis.pipeline(transaction=True) as pipe:
            ticket_id, _kind = self.tickets.queue_open(
                pipe, conv, previous=None, reason="asked", detail="asked for a person", display_name=name
            )
            await pipe.execute()
        return await self.tickets.get(ticket_id)


@contextlib.asynccontextmanager
async def running_stack(
    redis: aioredis.Redis, keys: Keys, *, cookie_secure: bool = False, models: ModelProvider | None = None
) -> AsyncIterator[Stack]:
    """httpx keeps ``Secure`` cookies from plain-HTTP test URLs to itself, so API tests run
    with ``cookie_secure=False``; the browser test runs with the default, True."""
    engine = build_engine(redis, keys, models)
    personas, tickets, history = engine.personas, engine.tickets, engine.conversations.history
    await personas.put(Persona(bot_id="support", display_name="Ava", greeting="Hello from Ava"))
    bus = engine.bus
    provider = engine.models
    desk = Desk(
        redis,
        keys,
        personas=personas,
        history=history,
        tickets=tickets,
        models=provider,
        config=DeskConfig(
            cookie_secure=cookie_secure, login_limit_account="5/minute", login_limit_address="50/minute"
        ),
    )
    web = WebChatAdapter(
        bus,
        bot_id="support",
        personas=personas,
        config=WebChatConfig(secret_key="test-secret-0123456789abcdef", cookie_secure=cookie_secure),
        hooks=desk.webchat_hooks(),
        reply_timeout=30,
    )
    async with engine, web:
        app = build_app(web, [], extra_routes=desk.routes())
        yield Stack(app, web, desk, tickets, history, personas, bus, redis, keys)


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        server.force_exit = True
        await task
        sock.close()
