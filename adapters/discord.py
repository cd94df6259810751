"""Discord adapter on discord.py: the gateway brings messages in, REST sends replies.

Direct messages are always answered; in guild channels only messages that mention the
bot (or reply to it) unless the persona answers every group message. Each answer is a
reply to the customer's message (edited in place as it is written with ``stream: edit``).
Edits, deletions and other bots are ignored. Quick replies are buttons; clicks and the
``/help`` and ``/human`` application commands come as interactions
(``adapters.discord_events`` reads messages and interactions). ``import discord`` is the
SDK (guarded below).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import aiohttp
import discord
import yarl
from discord.http import HTTPClient
from discord.http import Route as DiscordRoute

from adapters import discord_events as events
from adapters.base import PlatformAdapter
from adapters.config import DISCORD_TOKEN_HELP, DiscordConfig
from adapters.failures import explain_refusal, for_status
from adapters.interactive import buttons_for
from adapters.markup import to_discord_markdown
from adapters.throttle import Limit
from core.bus import Bus
from core.errors import AdapterAuthError, ChatbotError, DeliveryError, RateLimited
from core.messages import Reply

if not hasattr(discord, "Client"):  # adapters/ put on sys.path would import this file as `discord`
    raise ImportError("adapters/discord.py shadowed the discord.py SDK; run from the project root")

log = logging.getLogger(__name__)
OnMessage = Callable[[discord.Message], Awaitable[None]]
OnInteraction = Callable[[discord.Interaction], Awaitable[None]]

REJECTED = "DISCORD_BOT_TOKEN was rejected by Discord"
INTENT_REFUSED = (
    "Discord refused the MESSAGE CONTENT intent; enable it in the Developer Portal "
    "(Applications > your app > Bot > Privileged Gateway Intents)"
)
# Nobody is pinged by a bot answer except the customer it replies to (first part only).
# A text bot never joins voice: skip discord.py's "voice will NOT be supported" warnings.
discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
SAFE_MENTIONS = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=False)


class RoutedHTTPClient(HTTPClient):
    """discord.py's HTTP client, pointed at another REST root and gateway.

    discord.py has no option for this: ``Route.BASE`` is a class attribute and the
    gateway URL is ``DiscordWebSocket.DEFAULT_GATEWAY`` (then the ``resume_gateway_url``
    from READY). Rewriting in this instance's ``request``/``ws_connect`` changes only our
    client, never the module-wide defaults other clients in the process use.
    """

    def __init__(self, *args: Any, api_base_url: str | None, gateway_url: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.gateway_url = yarl.URL(gateway_url) if gateway_url else None

    async def request(self, route: DiscordRoute, **kwargs: Any) -> Any:
        if self.api_base_url and route.url.startswith(DiscordRoute.BASE):
            route.url = self.api_base_url + route.url[len(DiscordRoute.BASE) :]
        return await super().request(route, **kwargs)

    async def ws_connect(self, url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        target = yarl.URL(url)
        # Discord's own gateway hosts (first connect, resume) are *.discord.gg; voice is not.
        if self.gateway_url and (target.host or "").endswith("discord.gg"):
            target = self.gateway_url.with_query(target.query)
        return await super().ws_connect(str(target), compress=compress)


class _Client(discord.Client):
    def __init__(self, config: DiscordConfig, on_message: OnMessage, on_interaction: OnInteraction) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: enable it in the Developer Portal
        intents.messages = True  # guild_messages + dm_messages
        intents.dm_messages = True
        super().__init__(intents=intents, allowed_mentions=SAFE_MENTIONS, chunk_guilds_at_startup=False)
        routed = RoutedHTTPClient(
            self.loop,
            api_base_url=config.api_base_url,
            gateway_url=config.gateway_url,
            max_ratelimit_timeout=config.max_ratelimit_timeout,
        )
        self.http = self._connection.http = routed  # the state sends through our client too
        self.connected = asyncio.Event()
        self._handle, self._interact = on_message, on_interaction

    async def on_connect(self) -> None:
        self.connected.set()

    async def on_message(self, message: discord.Message) -> None:
        await self._handle(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self._interact(interaction)


class DiscordAdapter(PlatformAdapter[DiscordConfig]):
    platform: ClassVar[str] = "discord"
    max_message_chars: ClassVar[int] = 2000
    typing_interval: ClassVar[float] = 8.0  # a typing ping shows for ~10 s
    # limits come in X-RateLimit-* headers; a channel's message bucket is 5 per 5 s
    stream_limits: ClassVar[tuple[Limit, ...]] = (Limit(5, 5.0),)

    def __init__(self, bus: Bus, config: DiscordConfig, **options: Any) -> None:
        super().__init__(bus, config, **options)
        self._client: _Client | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def connect(self) -> None:
        client = self._client = _Client(self.config, self._on_message, self._on_interaction)
        try:
            await client.login(self.config.token)
        except discord.LoginFailure:
            raise AdapterAuthError(f"{REJECTED} (401 Unauthorized); {DISCORD_TOKEN_HELP}") from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            where = self.config.api_base_url or DiscordRoute.BASE
            raise self.unreachable("Discord", where, exc, "DISCORD_API_BASE_URL") from None
        await events.register_commands(client.http, client.application_id)
        # discord.py's gateway loop (heartbeats, reconnects, resumes) runs in the background.
        gateway = client.connect(reconnect=True)
        if not await self.receive_in_background(gateway, client.connected, self.config.connect_timeout):
            log.warning("discord: no READY from the gateway yet; discord.py keeps trying")

    def receive_failure(self, exc: Exception) -> ChatbotError:
        """Why the gateway loop ended, in one line naming what to fix."""
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            return AdapterAuthError(INTENT_REFUSED)
        if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
            return AdapterAuthError(f"{REJECTED} at the gateway (4004); {DISCORD_TOKEN_HELP}")
        if isinstance(exc, discord.ConnectionClosed):
            return DeliveryError(f"the Discord gateway closed the connection ({exc.code} {exc.reason})")
        return DeliveryError(f"the Discord gateway stopped: {type(exc).__name__}: {exc}")

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- intake ------------------------------------------------------------------------
    async def _on_message(self, message: discord.Message) -> None:
        """MESSAGE_CREATE only: discord.py's edit/delete events are not listened to."""
        me = self._client.user if self._client else None
        if me is not None:  # None: not logged in (yet)
            await self.accept(events.message_event(message, me.id, self.bot_id))

    async def _on_interaction(self, interaction: discord.Interaction) -> None:
        """A click on a quick reply or /help, /human: queued once per interaction id, then
        acknowledged (within Discord's 3 seconds: one Redis call comes first)."""
        found = events.interaction_event(interaction, self.bot_id)
        if found is not None and self._client is not None and (await self.accept(found[0])).taken:
            await events.acknowledge(self._client.http, interaction, found[1])

    # -- delivery ------------------------------------------------------------------------
    async def send_text(self, reply: Reply, text: str, part: int) -> str | None:
        channel = self._channel(reply)
        mentions = discord.AllowedMentions.none()
        mentions.replied_user = part == 0  # ping only the customer replied to, on the first part
        # the nonce: discord.py sends enforce_nonce with it, so a retried part posts once
        options: dict[str, Any] = {"allowed_mentions": mentions, "nonce": reply_nonce(reply, part)}
        if reply.meta.get("message_id"):  # fail_if_not_exists=False: deleted? still answer
            options["reference"] = discord.MessageReference(
                message_id=int(reply.meta["message_id"]),
                channel_id=channel.id,
                guild_id=channel.guild_id,
                fail_if_not_exists=False,
            )
        if view := events.buttons(buttons_for(reply, part, self.max_message_chars)):
            options["view"] = view
        content = self._content(text)
        if part == 0 and events.answers_command(reply):  # it replaces the command's "thinking..."
            http = self.connected(self._client).http
            if edited := await self._rest(events.edit_original(http, reply, content, view)):
                return str(edited)
        return str((await self._rest(channel.send(content, **options))).id)

    async def edit_text(self, reply: Reply, message_id: str, text: str) -> None:
        message = self._channel(reply).get_partial_message(int(message_id))
        content = self._content(text)
        if view := events.buttons(buttons_for(reply, 0, self.max_message_chars)):  # a final's buttons
            await self._rest(message.edit(content=content, view=view))  # PATCH .../messages/{id}
        else:
            await self._rest(message.edit(content=content))

    def _channel(self, reply: Reply) -> discord.PartialMessageable:
        client = self._client
        if client is None or client.is_closed():
            raise DeliveryError("the Discord client is not connected")
        guild_id = int(reply.meta["guild_id"]) if reply.meta.get("guild_id") else None
        return client.get_partial_messageable(int(reply.chat_id), guild_id=guild_id)

    def _content(self, text: str) -> str:
        marked_up = to_discord_markdown(text)  # escapes can push a full part over the limit:
        return marked_up if len(marked_up) <= self.max_message_chars else text  # then as written

    async def _rest(self, call: Awaitable[Any]) -> Any:
        """One REST call, its failures turned into the framework's errors."""
        try:
            return await call
        except discord.RateLimited as exc:  # discord.py would wait longer than max_ratelimit_timeout
            raise RateLimited(exc.retry_after) from None
        except discord.HTTPException as exc:
            raise _send_failure(exc) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"Discord unreachable: {type(exc).__name__}: {exc}") from None

    async def send_typing(self, chat_id: str, meta: dict[str, str]) -> None:
        if self._client is not None and not self._client.is_closed():
            await self._client.get_partial_messageable(int(chat_id)).typing()


def reply_nonce(reply: Reply, part: int) -> str:
    """Discord's idempotency key for one part of a reply: the same for every retry, in
    this process or another (Discord returns the earlier message for a nonce it saw in
    the last few minutes instead of posting it again); at most 25 characters."""
    return hashlib.sha256(f"{reply.reply_id}:{part}".encode()).hexdigest()[:25]


def _send_failure(exc: discord.HTTPException) -> ChatbotError:
    """discord.py sleeps and retries a genuine 429 itself (5 tries); one it gives up on
    is waited out by the Outbox, like every other failure ``for_status`` sorts."""
    return for_status(
        exc.status,
        explain_refusal(
            "discord", f"Discord answered {exc.status}: {exc.text or 'no details'} (code {exc.code})"
        ),
        auth=AdapterAuthError(f"{REJECTED} while sending (401 Unauthorized); {DISCORD_TOKEN_HELP}"),
        retry_after=getattr(exc.response, "headers", {}).get("Retry-After"),
    )
