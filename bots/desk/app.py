"""The support desk, assembled: accounts, sign-in, the ticket and admin APIs, the pages.

``chatbot run`` builds one :class:`Desk` from the runtime and mounts ``desk.routes()``
next to the web chat on the same port; tests build one from their own parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.routing import BaseRoute

from adapters.webchat import WebChatConfig, WebChatHooks
from bots.config import Settings
from bots.desk.accounts import Accounts
from bots.desk.audit import DeskAudit
from bots.desk.auth import Auth, Sessions
from bots.desk.secret import secret_key
from bots.desk.throttle import LoginThrottle
from bots.runtime import Runtime
from core.engine import ModelProvider
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey
from core.persona import PersonaStore
from core.proactive import Proactive
from core.tickets import Tickets


@dataclass(frozen=True, slots=True)
class DeskConfig:
    cookie_secure: bool = True
    session_seconds: int = 12 * 3600
    max_body_bytes: int = 64 * 1024
    login_limit_account: str = "5/minute"
    login_limit_address: str = "20/minute"
    max_message_chars: int = 4000
    default_bot: str = "support"


class Desk:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        personas: PersonaStore,
        history: History,
        tickets: Tickets,
        models: ModelProvider,
        config: DeskConfig = DeskConfig(),
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.personas = personas
        self.history = history
        self.tickets = tickets
        self.models = models
        self.config = config
        self.accounts = Accounts(redis, keys)
        self.sessions = Sessions(redis, keys, config.session_seconds)
        self.auth = Auth(self.accounts, self.sessions)
        self.audit = DeskAudit(redis, keys)
        self.throttle = LoginThrottle(redis, keys, config.login_limit_account, config.login_limit_address)
        self.proactive = Proactive(redis, keys, tickets.bus, history, personas)

    def routes(self) -> list[BaseRoute]:
        from bots.desk.api_admin import admin_routes
        from bots.desk.api_auth import auth_routes
        from bots.desk.api_send import send_routes
        from bots.desk.api_tickets import ticket_routes
        from bots.desk.openapi import openapi_routes
        from bots.desk.pages import page_routes

        return [
            *auth_routes(self),
            *ticket_routes(self),
            *admin_routes(self),
            *send_routes(self, self.config.default_bot),
            *openapi_routes(),
            *page_routes(),
        ]

    def webchat_hooks(self) -> WebChatHooks:
        """What the web chat borrows: API-token checks, the customer's transcript, and
        whether the team holds a conversation."""

        async def token_owner(token: str) -> str | None:
            account = await self.accounts.token_owner(token)
            return account.username if account else None

        async def transcript(conv: ConversationKey) -> list[Turn]:
            return await self.history.recent(conv, self.history.max_turns)

        async def held(conv: ConversationKey) -> bool:
            ticket = (await self.tickets.latest_many([conv])).get(conv)
            return ticket is not None and ticket.held

        return WebChatHooks(token_owner=token_owner, transcript=transcript, held=held)


def desk_config(settings: Settings) -> DeskConfig:
    return DeskConfig(
        cookie_secure=settings.cookie_secure,
        session_seconds=int(settings.desk_session_hours * 3600),
        max_body_bytes=settings.max_body_bytes,
        login_limit_account=settings.login_limit_account,
        login_limit_address=settings.login_limit_address,
        max_message_chars=settings.max_message_chars,
        default_bot=settings.default_bot,
    )


def webchat_config(settings: Settings) -> WebChatConfig:
    return WebChatConfig(
        secret_key=secret_key(settings),
        cookie_secure=settings.cookie_secure,
        max_body_bytes=settings.max_body_bytes,
    )


def build_desk(rt: Runtime) -> Desk:
    """The desk over a running :class:`Runtime` (what ``chatbot run`` serves)."""
    return Desk(
        rt.redis,
        rt.keys,
        personas=rt.personas,
        history=rt.history,
        tickets=rt.tickets,
        models=rt.registry,
        config=desk_config(rt.settings),
    )
