"""Every bot on every platform it lists, kept in step with the personas in Redis.

``chatbot run`` serves all bots in one process. For each bot whose persona is
``enabled``, and each platform in its ``platforms`` that this role runs, the fleet runs
one adapter: the web chat (``/b/{bot}/``, the default bot's also at ``/``), and every
chat platform whose credentials the persona names (``bots.credentials``). Each adapter
reads its own outbound stream (``{ns}:stream:outbound:{platform}:{bot}``) with its own
upkeep, so one bot's outage or bad token never touches another's.

Every ``CHATBOT_RECONCILE_INTERVAL`` seconds the fleet reads the personas again and
starts or stops adapters to match: ``chatbot bots disable shop --platform telegram`` (or
a persona edit) stops that one adapter, in every process, while the others keep
answering; a changed credential rebuilds its adapter. An adapter that could not start
(a bad token) is not retried until its credentials or its persona change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from starlette.routing import BaseRoute

from adapters.base import Adapter
from adapters.webchat import WebChatAdapter, WebChatConfig, WebChatHooks, static_routes
from bots.credentials import SECRET_PLATFORMS, BotCredentials, Environment, resolve
from bots.live_routes import LiveRoutes, unserved_routes
from bots.platforms import build_adapter
from bots.roles import Role, consumer_name
from bots.runtime import Runtime
from core.bus import DELIVERY_GROUP
from core.errors import ChatbotError, ConfigError
from core.persona import Persona
from core.upkeep import StreamUpkeep

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (bot, platform)
_PRIMARY = {"telegram": "token", "slack": "bot_token", "discord": "token"}  # one per bot


@dataclass(frozen=True, slots=True)
class WebParts:
    """What each bot's web chat borrows from the desk (``bots.desk.app``)."""

    config: WebChatConfig
    hooks: WebChatHooks


@dataclass(frozen=True, slots=True)
class _Plan:
    fingerprint: str
    creds: BotCredentials | None = None  # None: the web chat
    problem: str = ""  # why it cannot run (a token another bot uses...)


@dataclass
class _Slot:
    adapter: Adapter
    upkeep: StreamUpkeep
    fingerprint: str
    stopping: bool = False  # listed until it has stopped: its last updates are still handled


class Fleet:
    def __init__(
        self,
        rt: Runtime,
        role: Role,
        *,
        web: WebParts | None = None,
        loops: dict[str, Callable[[], bool]] | None = None,
    ) -> None:
        self.rt = rt
        self.role = role
        self.web = web
        self.settings = rt.settings
        self.loops = loops if loops is not None else {}  # the health probe's, kept up to date
        self.slots: dict[Key, _Slot] = {}
        self.failed: dict[Key, tuple[str, str]] = {}  # -> (fingerprint, why)
        self._routes: list[BaseRoute] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # set before the loop is cancelled: see __aexit__

    # -- keeping in step -------------------------------------------------------------------
    async def plan(self) -> dict[Key, _Plan] | None:
        """What should run now, from the live personas and the environment; None when
        Redis holds no persona at all (it came back empty: the worker re-seeds them)."""
        personas = await self.rt.personas.get_many(await self.rt.personas.bot_ids())
        if not personas:
            return None
        env, wanted = Environment(self.settings), dict[Key, _Plan]()
        taken: dict[tuple[str, str], str] = {}  # (platform, token or webhook path) -> bot
        for bot_id, persona in sorted(
            personas.items(), key=lambda item: item[0] != self.settings.default_bot
        ):
            if not persona.enabled:
                continue
            if "web" in persona.platforms and self.web is not None:
                wanted[(bot_id, "web")] = _Plan("web")
            for platform in (p for p in persona.platforms if p in SECRET_PLATFORMS):
                creds = resolve(env, persona, platform)
                if creds.configured and self.role.wants(platform, webhook=creds.webhook):
                    wanted[(bot_id, platform)] = _Plan(creds.fingerprint, creds, _clash(creds, taken))
        return wanted

    async def reconcile(self) -> None:
        """Start and stop adapters to match :meth:`plan`."""
        async with self._lock:
            wanted = await self.plan()
            if wanted is None:
                log.warning("bots: no personas in Redis; adapters keep running until they are back")
                return
            for key, slot in list(self.slots.items()):
                if key not in wanted or wanted[key].fingerprint != slot.fingerprint:
                    await self._stop(key)
            for key, (fingerprint, _why) in list(self.failed.items()):
                if key not in wanted or wanted[key].fingerprint != fingerprint:
                    del self.failed[key]
            new = [k for k in wanted if k not in self.slots and k not in self.failed]
            await asyncio.gather(*(self._start(key, wanted[key]) for key in new))
            self._routes = [r for slot in self.slots.values() for r in slot.adapter.routes()]

    async def _run(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.settings.reconcile_interval)
            if self._closing:
                return
            try:
                await self.reconcile()
            except Exception as exc:  # Redis away, a bad persona: the next round tries again
                log.warning("bots: could not reconcile adapters with the personas: %s", exc)

    async def __aenter__(self) -> Fleet:
        await self.reconcile()
        self._task = asyncio.create_task(self._run(), name="fleet")
        self.loops["bots"] = lambda: self._task is not None and not self._task.done()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # The flag, not only the cancellation, ends the loop: a cancellation that lands
        # inside a library's await can be lost (seen in 2 of 17 runs of a test: the task
        # was "cancelling" yet back asleep), and the shutdown would wait for it forever.
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:  # stopped side by side: each hands back its own work
            await asyncio.gather(*(self._stop(key) for key in list(self.slots)))

    # -- one adapter -----------------------------------------------------------------------
    def _build(self, key: Key, plan: _Plan) -> Adapter:
        bot_id = key[0]
        if plan.problem:
            raise ConfigError(plan.problem)
        if plan.creds is not None:
            return build_adapter(plan.creds, self.settings, self.rt.bus, self.rt.personas)
        assert self.web is not None  # planned only when the role serves the web chat
        default = bot_id == self.settings.default_bot
        return WebChatAdapter(
            self.rt.bus,
            bot_id=bot_id,
            personas=self.rt.personas,
            config=self.web.config,
            hooks=self.web.hooks,
            prefixes=("", f"/b/{bot_id}") if default else (f"/b/{bot_id}",),
        )

    async def _start(self, key: Key, plan: _Plan) -> None:
        """Start one adapter; a failure is its one line in ``failed``, never the process's."""
        bot_id, platform = key
        try:
            adapter = self._build(key, plan)
        except ChatbotError as exc:
            self._failed(key, plan.fingerprint, str(exc))
            return
        adapter.outbox.consumer = consumer_name(platform)
        stream = self.rt.keys.outbound(platform, bot_id)
        upkeep = StreamUpkeep(
            self.rt.bus, stream, DELIVERY_GROUP, adapter.outbox.consumer, self.settings.upkeep
        )
        await upkeep.start()
        try:
            await adapter.start()
        except Exception as exc:  # a bad token, or an SDK surprise: the others keep running
            why = str(exc) if isinstance(exc, ChatbotError) else f"{type(exc).__name__}: {exc}"
            await upkeep.stop()
            self._failed(key, plan.fingerprint, adapter.named(adapter.redact.text(why)))
            return
        self.slots[key] = _Slot(adapter, upkeep, plan.fingerprint)
        self.loops[self._loop_name(key)] = lambda: upkeep.running
        log.info("%s adapter of bot %s running", platform, bot_id)

    def _failed(self, key: Key, fingerprint: str, why: str) -> None:
        self.failed[key] = (fingerprint, why)
        log.error("%s adapter of bot %s not started: %s", key[1], key[0], why)

    async def _stop(self, key: Key) -> None:
        slot = self.slots[key]
        slot.stopping = True
        self.loops.pop(self._loop_name(key), None)
        self._routes = [r for s in self.slots.values() if not s.stopping for r in s.adapter.routes()]
        try:
            await slot.adapter.stop()
        except Exception as exc:  # one that fails to stop does not keep the others up
            log.warning("%s adapter of bot %s did not stop cleanly: %s", key[1], key[0], exc)
        stream = self.rt.keys.outbound(key[1], key[0])
        await self.rt.hand_back(stream, DELIVERY_GROUP, slot.adapter.outbox.consumer)
        await slot.upkeep.stop()
        del self.slots[key]
        log.info("%s adapter of bot %s stopped", key[1], key[0])

    def _loop_name(self, key: Key) -> str:
        bot_id, platform = key
        return f"{platform}_upkeep" if bot_id == self.settings.default_bot else f"{platform}_upkeep:{bot_id}"

    # -- what the web app and the probes see ---------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        """The running adapters' routes (live), the web chat's files, and the fallbacks."""
        routes: list[BaseRoute] = [LiveRoutes(lambda: self._routes)]
        if self.web is not None:
            routes += static_routes()
        slack = self.role.wants("slack", webhook=True)
        return routes + unserved_routes(
            self.settings.default_bot, self.why_not_served, web=self.web is not None, slack=slack
        )

    async def why_not_served(self, bot_id: str, platform: str) -> tuple[int, str]:
        """(HTTP status, one line) for a request to a bot nobody serves here."""
        persona = (await self.rt.personas.get_many([bot_id])).get(bot_id)
        if persona is None:
            return 404, f"unknown bot {bot_id!r}"
        if not persona.enabled:
            return 404, f"bot {bot_id!r} is disabled (`chatbot bots enable {bot_id}`)"
        if platform not in persona.platforms:
            return 404, f"bot {bot_id!r} does not serve {platform} ({_listed(persona)})"
        slot = self.slots.get((bot_id, platform))
        if slot is not None and not slot.stopping:  # e.g. a Slack app in Socket Mode: no Events URL
            return 404, f"bot {bot_id!r} runs on {platform} here, but takes no requests at this path"
        if (bot_id, platform) in self.failed:
            return 503, f"bot {bot_id!r} is not running on {platform}: {self.failed[(bot_id, platform)][1]}"
        return 503, f"bot {bot_id!r} is starting on {platform} in this process; try again in a few seconds"

    def status(self) -> dict[str, dict[str, str]]:
        """bot -> platform -> ``running`` or the one line saying why not (``/healthz``)."""
        out: dict[str, dict[str, str]] = {}
        for (bot_id, platform), slot in sorted(self.slots.items()):
            adapter = slot.adapter
            state = "stopping" if slot.stopping else "running" if adapter.running else None
            out.setdefault(bot_id, {})[platform] = state or adapter.error or "stopped"
        for (bot_id, platform), (_fingerprint, why) in sorted(self.failed.items()):
            out.setdefault(bot_id, {})[platform] = why
        return out


def _listed(persona: Persona) -> str:
    return f"its persona lists {', '.join(persona.platforms) or 'no platforms'}"


def _clash(creds: BotCredentials, taken: dict[tuple[str, str], str]) -> str:
    """Why ``creds`` cannot run beside an earlier bot's: the same token (one token is one
    bot on the platform's side), or the same Telegram webhook path."""
    marks = [(creds.platform, creds.values.get(_PRIMARY[creds.platform], ""))]
    if creds.platform == "telegram" and creds.values.get("webhook_url"):
        marks.append(("telegram-webhook", urlparse(creds.values["webhook_url"]).path))
    for mark in marks:
        if mark[1] and mark in taken:
            what = "webhook path" if mark[0] == "telegram-webhook" else "token"
            return (
                f"bot {creds.bot_id!r}: its {creds.platform} {what} is bot {taken[mark]!r}'s too; "
                "each bot needs its own"
            )
    for mark in marks:
        taken.setdefault(mark, creds.bot_id)
    return ""
