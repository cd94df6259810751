"""Slack: Events API over HTTP (``POST /slack/events``) or Socket Mode, via slack-bolt.

Intake is only "turn the event into an IncomingMessage and put it on the stream"
(one Redis call), so Slack's 3-second acknowledgement window is always met; the
engine works from the stream. Bolt runs the listener before answering
(``process_before_response``), so a 200 means the message is safely queued and a
failure makes Slack retry. Retries and redeliveries carry the same ``event_id`` and are
taken once (``Bus.submit`` claims it with SET NX), whatever X-Slack-Retry-Num says.

Replies go to the thread of the message that mentioned the bot; in DMs they go to the
conversation (or its thread). Quick replies are Block Kit buttons; clicks on them and
slash commands come to the same endpoint (``adapters.slack_payloads``). slack_sdk's own
retry handlers are off: the Outbox owns waiting on 429 and backing off on network
errors, so nothing is sent twice or lost.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import aiohttp
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from adapters import slack_payloads as payloads
from adapters.base import PlatformAdapter
from adapters.config import SlackConfig
from adapters.failures import explain_refusal, retry_after_seconds
from adapters.interactive import buttons_for
from adapters.markup import to_slack_mrkdwn
from adapters.throttle import Limit
from adapters.webhooks import webhook_routes
from core.bus import Bus
from core.errors import AdapterAuthError, DeliveryError, PermanentDeliveryError, RateLimited
from core.messages import Reply

log = logging.getLogger(__name__)

AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
TOKEN_PAGES = {
    "SLACK_BOT_TOKEN": "OAuth & Permissions, xoxb-...",
    "SLACK_APP_TOKEN": "Basic Information > App-Level Tokens, xapp-...",
}


class SlackAdapter(PlatformAdapter[SlackConfig]):
    platform: ClassVar[str] = "slack"
    max_message_chars: ClassVar[int] = 3900  # Slack recommends <= 4,000; truncates at 40,000
    typing_interval: ClassVar[float] = 0.0  # Slack has no typing indicator for bots
    # posting: about 1 a second per channel; chat.update: Tier 3, 50+ a minute per workspace
    stream_limits: ClassVar[tuple[Limit, ...]] = (Limit(1, 1.0), Limit(50, 60.0, per="bot"))

    def __init__(self, bus: Bus, config: SlackConfig, **options: Any) -> None:
        super().__init__(bus, config, **options)
        api_url = config.api_url if config.api_url.endswith("/") else config.api_url + "/"
        # retry_handlers=[]: no hidden waits or resends inside the SDK; the Outbox retries.
        self.client = AsyncWebClient(token=config.bot_token, base_url=api_url, retry_handlers=[])
        bolt_log = logging.getLogger("slack_bolt")
        level = bolt_log.level
        # bolt also reads SLACK_BOT_TOKEN from the environment and warns that our client
        # takes precedence over it: true, and noise at every start.
        bolt_log.setLevel(logging.ERROR)
        try:
            self.app = AsyncApp(
                client=self.client,
                signing_secret=config.signing_secret,
                process_before_response=True,  # ack only once the message is on the stream
                logger=bolt_log,
                name=f"chatbot-{self.bot_id}",
            )
        finally:
            bolt_log.setLevel(level)
        self.app.event("message")(self._on_message)
        self.app.event("app_mention")(self._on_mention)
        self.app.action(re.compile(f"^{payloads.ACTION_PREFIX}"))(self._on_action)
        self.app.command(re.compile(r"^/"))(self._on_command)
        self._http = AsyncSlackRequestHandler(self.app)
        self._socket: Any = None
        self.bot_user_id = ""  # our Slack user id (U...), from auth.test
        self.slack_bot_id = ""  # our bot id (B...), from auth.test

    # -- lifecycle -------------------------------------------------------------------
    async def connect(self) -> None:
        auth = await self._call("auth.test", self.client.auth_test(), "SLACK_BOT_TOKEN")
        self.bot_user_id = str(auth.get("user_id") or "")
        self.slack_bot_id = str(auth.get("bot_id") or "")
        log.info("slack: connected as %s (team %s)", self.bot_user_id, auth.get("team_id"))
        if self.config.app_token:
            await self._connect_socket_mode()

    async def _connect_socket_mode(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        # Ask for the WebSocket URL ourselves first: the SDK's connect() retries a bad
        # app token forever, and we want one clear line instead.
        opened = await self._call(
            "apps.connections.open",
            self.client.apps_connections_open(app_token=self.config.app_token),
            "SLACK_APP_TOKEN",
        )
        self._socket = AsyncSocketModeHandler(self.app, self.config.app_token, logger=log)
        self._socket.client.wss_uri = opened["url"]
        await self._socket.connect_async()

    async def disconnect(self) -> None:
        if self._socket is not None:
            socket, self._socket = self._socket, None
            await socket.close_async()

    def routes(self) -> list[BaseRoute]:
        """``POST /slack/events`` (or the bot's ``events_paths``): the Request URL of events,
        interactivity and slash commands (signatures checked by bolt); none in Socket Mode
        without a signing secret."""
        paths = self.config.events_paths if self.config.signing_secret else ()
        return [route for path in paths for route in webhook_routes(path, self._events_endpoint)]

    async def _events_endpoint(self, request: Request) -> Response:
        return await self._http.handle(request)

    # -- intake ------------------------------------------------------------------------
    async def _on_action(self, ack: Any, body: dict[str, Any]) -> None:
        """A click on a quick reply: queued once per click, then its buttons are marked."""
        tap = payloads.tap_event(body, self.bot_id)
        if tap is not None and (await self.accept(tap[0])).taken:
            channel, ts, blocks = payloads.marked(body, tap[1].label)
            text = str((body.get("message") or {}).get("text") or tap[1].label)
            update = self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
            try:
                await self._call("chat.update", update, "SLACK_BOT_TOKEN")
            except DeliveryError as exc:  # cosmetic: the choice is queued already
                log.warning("slack: could not mark the choice %r: %s", tap[1].label, exc)
        await ack()

    async def _on_command(self, ack: Any, command: dict[str, Any]) -> None:
        """A slash command (``/support help``, ``/support human``): answered in its channel."""
        await self.accept(payloads.command_event(command, self.bot_id))
        await ack()

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: dict[str, Any]) -> None:
        await self._intake(event, body, context, mention=False)

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any], context: dict[str, Any]) -> None:
        await self._intake(event, body, context, mention=True)

    async def _intake(
        self, event: dict[str, Any], body: dict[str, Any], context: dict[str, Any], *, mention: bool
    ) -> None:
        bot_user = str(context.get("bot_user_id") or self.bot_user_id)
        found = payloads.message_event(event, body, self.bot_id, bot_user, mention=mention)
        if found is not None:  # None: an edit, a join, a mention's second copy...
            await self.accept(found)

    # -- delivery ----------------------------------------------------------------------
    async def send_text(self, reply: Reply, text: str, part: int) -> str | None:
        channel = reply.meta.get("channel") or reply.chat_id
        sent = await self._call(
            "chat.postMessage",
            self.client.chat_postMessage(
                channel=channel,
                text=to_slack_mrkdwn(text),
                thread_ts=reply.meta.get("thread_ts") or None,
                blocks=payloads.blocks(text, buttons_for(reply, part, self.max_message_chars)),
                mrkdwn=True,
                unfurl_links=False,
                unfurl_media=False,
            ),
            "SLACK_BOT_TOKEN",
        )
        return str(sent.get("ts") or "") or None

    async def edit_text(self, reply: Reply, message_id: str, text: str) -> None:
        channel = reply.meta.get("channel") or reply.chat_id
        blocks = payloads.blocks(text, buttons_for(reply, 0, self.max_message_chars))  # a final's buttons
        update = self.client.chat_update(
            channel=channel, ts=message_id, text=to_slack_mrkdwn(text), blocks=blocks
        )
        await self._call("chat.update", update, "SLACK_BOT_TOKEN")

    async def _call(self, method: str, call: Any, env_var: str) -> Any:
        """Await one Web API call, mapping its failures onto the framework's errors."""
        try:
            return await call
        except SlackApiError as exc:
            response = exc.response
            status = int(getattr(response, "status_code", 0) or getattr(response, "status", 0) or 0)
            error = _error_code(response)
            if status == 429 or error == "ratelimited":
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), default=1.0)
                raise RateLimited(
                    retry_after, f"Slack {method} rate limited; retry after {retry_after:g}s"
                ) from None
            if error in AUTH_ERRORS:
                raise AdapterAuthError(
                    f"{env_var} was rejected by Slack ({error}); copy a valid token from your app's "
                    f"page at api.slack.com/apps ({TOKEN_PAGES[env_var]})"
                ) from None
            if status >= 500 or error in TRANSIENT_ERRORS or not error:
                raise DeliveryError(
                    f"Slack {method} failed (HTTP {status}, {error or 'no error code'})"
                ) from None
            # channel_not_found, not_in_channel, is_archived...: retrying cannot help
            raise PermanentDeliveryError(explain_refusal("slack", f"Slack {method} said {error}")) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.unreachable("the Slack Web API", self.client.base_url, exc, "SLACK_API_URL") from None


def _error_code(response: Any) -> str:
    try:
        return str(response.get("error") or "")
    except (AttributeError, TypeError, KeyError):
        return ""
