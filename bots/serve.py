"""``chatbot run``: one process of a role (``bots.roles``) over the shared Redis.

``--role all`` (the default) runs the engine, the web app and every configured adapter in
one process. Each adapter starts on its own: one that fails (a bad token, say) is
reported in one line and stopped, while the rest keeps running. Every role serves
``/healthz``, ``/readyz`` and ``/metrics`` on its port.

SIGTERM (or Ctrl-C) stops taking work and exits within ``CHATBOT_SHUTDOWN_GRACE``: the
web app stops accepting requests and lets waiting ones get their replies, adapters stop
reading their outbound streams, the engine finishes the batch in hand, and whatever is
still unfinished is handed back (made claimable at once by the other processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.base import Adapter
from adapters.webchat import WebChatAdapter
from bots.config import Settings
from bots.desk.app import build_desk, webchat_config
from bots.desk.headers import SecurityHeaders
from bots.health import Health
from bots.platforms import Platforms, configured_adapters
from bots.roles import Role, consumer_name
from bots.runtime import Runtime
from core.bus import DELIVERY_GROUP, ENGINE_GROUP
from core.errors import ChatbotError, ConfigError
from core.upkeep import StreamUpkeep

log = logging.getLogger(__name__)

ALL = Role("all")


def build_app(
    web: WebChatAdapter | None,
    adapters: list[Adapter],
    extra_routes: list[BaseRoute] | None = None,
    failed: dict[str, str] | None = None,
    *,
    health: Health | None = None,
) -> Starlette:
    """The role's web app: probes, metrics, the web chat and the adapters' webhooks."""
    if health is None:
        if web is None:
            raise ValueError("build_app needs the web chat or a Health")
        health = Health(web.bus, "all", adapters=[web, *adapters], failed=dict(failed or {}))

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [*health.routes(), Route("/metrics", metrics)]
    for adapter in [web, *adapters] if web else adapters:
        routes += adapter.routes()
    routes += extra_routes or []
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


def _listen(host: str, port: int) -> socket.socket:
    """Bind the web app's socket first: a busy port fails in one line (OSError) before
    models load, not as a uvicorn SystemExit after everything started."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(
    settings: Settings, *, role: Role = ALL, on_ready: Callable[[str], None] | None = None
) -> None:
    """Run ``role`` until SIGINT/SIGTERM; raises OSError when the port is taken."""
    with _listen(settings.host, settings.port) as sock:
        await _serve(settings, role, sock, on_ready)


async def _serve(
    settings: Settings, role: Role, sock: socket.socket, on_ready: Callable[[str], None] | None
) -> None:
    grace = settings.shutdown_grace
    async with Runtime(settings) as rt, contextlib.AsyncExitStack() as running:
        # The probes answer from the start: loading models makes the process unready,
        # never dead (an orchestrator must not kill a worker for loading).
        health = Health(rt.bus, str(role), max_lag=settings.ready_max_lag, needs_models=role.runs_engine)
        app = build_app(None, [], health=health)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_level="warning",
                log_config=None,  # our logging setup stays; uvicorn's dictConfig would close its handlers
                lifespan="off",
                timeout_graceful_shutdown=max(1, int(grace * 0.4)),
                # Idle keep-alive connections outlive a load balancer's (60 s is common), so
                # a client never sends a request on a connection the server is closing.
                timeout_keep_alive=75,
            )
        )
        loop, stopping = asyncio.get_running_loop(), list[bool]()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, _shutdown, server, grace, stopping)
        server_task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
        running.push_async_callback(_stop_server, server, server_task)  # after a failed start
        while not server.started and not server_task.done():
            await asyncio.sleep(0.05)
        if server_task.done():
            server_task.result()  # raises the bind error

        persona = await rt.personas.get(settings.default_bot)
        platforms = _platforms(settings, rt, role, list(persona.platforms))
        health.failed = platforms.failed
        # Stopped in reverse: adapters (and their outboxes) first, the engine last, each
        # handing back what it could not finish.
        if role.runs_engine:
            # Load the models before taking work: the first customer should not wait.
            await asyncio.to_thread(rt.registry.intent_model, persona.models.intent)
            await asyncio.to_thread(rt.registry.reply_model, persona.models.lm)
            health.models_loaded = True
            worker = consumer_name("worker")
            running.push_async_callback(_hand_back, rt, rt.keys.intake(), ENGINE_GROUP, worker)
            engine = await running.enter_async_context(rt.engine(worker, stop_timeout_s=grace * 0.4))
            upkeep = StreamUpkeep(
                rt.bus, rt.keys.intake(), ENGINE_GROUP, worker, settings.upkeep, also=rt.seed_missing_personas
            )
            await running.enter_async_context(upkeep)
            health.loops.update(engine=lambda: engine.running, intake_upkeep=lambda: upkeep.running)
        web: WebChatAdapter | None = None
        if role.runs_web_chat:
            desk = build_desk(rt)
            web = WebChatAdapter(
                rt.bus,
                bot_id=settings.default_bot,
                personas=rt.personas,
                config=webchat_config(settings),
                hooks=desk.webchat_hooks(),
                consumer=consumer_name("web"),
            )
            app.router.routes.extend(desk.routes())
        adapters = [a for a in [web, *platforms.adapters] if a is not None]
        for adapter in platforms.adapters:
            adapter.outbox.consumer = consumer_name(adapter.platform)
        for adapter in adapters:
            stream = rt.keys.outbound(adapter.platform, adapter.bot_id)
            running.push_async_callback(_hand_back, rt, stream, DELIVERY_GROUP, adapter.outbox.consumer)
            running.push_async_callback(_stop, adapter)
            outbox_upkeep = StreamUpkeep(
                rt.bus, stream, DELIVERY_GROUP, adapter.outbox.consumer, settings.upkeep
            )
            await running.enter_async_context(outbox_upkeep)
            health.loops[f"{adapter.platform}_upkeep"] = lambda u=outbox_upkeep: u.running  # type: ignore[misc]
        # Side by side: a platform that is slow to answer does not hold up the others.
        await asyncio.gather(*(_start(adapter) for adapter in adapters))
        health.adapters = adapters
        app.router.routes.extend(route for adapter in adapters for route in adapter.routes())

        url = f"http://{settings.host}:{sock.getsockname()[1]}"
        log.info("role %s ready on %s", role, url)
        if on_ready:
            on_ready(url)
        await server_task


async def _stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task


def _platforms(settings: Settings, rt: Runtime, role: Role, serves: list[str]) -> Platforms:
    """The platform adapters this role runs; ``adapter:X`` without X configured is one line."""
    everything = configured_adapters(settings, rt.bus, rt.personas, serves=serves)
    chosen = Platforms(
        [a for a in everything.adapters if role.wants(a.platform, settings)],
        {p: why for p, why in everything.failed.items() if role.wants(p, settings)},
    )
    if role.name == "adapter":
        if role.platform in chosen.failed:
            raise ConfigError(chosen.failed[role.platform])
        if not chosen.adapters:
            raise ConfigError(
                f"--role {role} needs {role.platform} credentials (see docs/platforms.md) "
                f"and bot {settings.default_bot!r} serving {role.platform}"
            )
    return chosen


def _shutdown(server: uvicorn.Server, grace: float, stopping: list[bool]) -> None:
    """SIGTERM/SIGINT: stop the web app (the rest follows); a shutdown that overruns the
    grace time ends the process at once. Called more than once per signal (uvicorn
    raises it again when it is done serving), so only the first call counts."""
    if stopping:
        return
    stopping.append(True)
    server.should_exit = True
    log.warning("stopping: finishing work in hand for up to %.0fs", grace)
    timer = threading.Timer(grace, os._exit, args=(1,))
    timer.daemon = True
    timer.start()


async def _hand_back(rt: Runtime, stream: str, group: str, consumer: str) -> None:
    """Make what this consumer did not finish claimable by the others at once."""
    try:
        count = await rt.bus.hand_back(stream, group, consumer, rt.settings.upkeep.claim_idle_ms)
    except Exception as exc:  # Redis gone: the entries are claimed after the idle time instead
        log.warning("could not hand back %s entries of %s: %s", stream, consumer, exc)
        return
    if count:
        log.warning("handed back %d unfinished entries of %s", count, stream)


async def _start(adapter: Adapter) -> None:
    """Start one adapter; a failure is its one-line ``error``, never the process's."""
    try:
        await adapter.start()
        log.info("%s adapter running", adapter.platform)
    except ChatbotError as exc:
        adapter.error = str(exc)
        log.error("%s adapter not started: %s", adapter.platform, exc)
    except Exception as exc:  # a bug or an SDK surprise: keep the others running
        adapter.error = f"{type(exc).__name__}: {exc}"
        log.error("%s adapter crashed at start: %s", adapter.platform, adapter.error)


async def _stop(adapter: Adapter) -> None:
    """Stop one adapter at shutdown; one that fails to stop does not keep the others up."""
    try:
        await adapter.stop()
    except Exception as exc:
        log.warning("%s adapter did not stop cleanly: %s", adapter.platform, exc)
