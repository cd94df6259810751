"""``chatbot run``: one process of a role (``bots.roles``) over the shared Redis.

``--role all`` (the default) runs the engine, the web app and every bot's adapters in one
process (``bots.fleet``). Each adapter starts on its own: one that fails (a bad token,
say) is reported in one line and stopped, while the rest keeps running. Every role serves
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
from adapters.webchat import WebChatAdapter, static_routes
from bots.config import Settings
from bots.desk.app import build_desk, webchat_config
from bots.desk.headers import SecurityHeaders
from bots.fleet import Fleet, WebParts
from bots.health import Health
from bots.roles import Role, consumer_name
from bots.runtime import Runtime
from core.bus import ENGINE_GROUP
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
    if web is not None:
        routes += static_routes()
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
        health = Health(
            rt.bus,
            str(role),
            max_lag=settings.ready_max_lag,
            needs_models=role.runs_engine,
            default_bot=settings.default_bot,
        )
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

        # Stopped in reverse: adapters (and their outboxes) first, the engine last, each
        # handing back what it could not finish.
        if role.runs_engine:
            # Load the models before taking work: the first customer should not wait.
            await _load_models(rt)
            health.models_loaded = True
            worker = consumer_name("worker")
            running.push_async_callback(rt.hand_back, rt.keys.intake(), ENGINE_GROUP, worker)
            engine = await running.enter_async_context(rt.engine(worker, stop_timeout_s=grace * 0.4))
            upkeep = StreamUpkeep(
                rt.bus, rt.keys.intake(), ENGINE_GROUP, worker, settings.upkeep, also=rt.seed_missing_personas
            )
            await running.enter_async_context(upkeep)
            health.loops.update(engine=lambda: engine.running, intake_upkeep=lambda: upkeep.running)
        web: WebParts | None = None
        if role.runs_web_chat:
            desk = build_desk(rt)
            web = WebParts(webchat_config(settings), desk.webchat_hooks())
            app.router.routes.extend(desk.routes())
        # Every bot on every platform it lists, started side by side (a platform that is
        # slow to answer does not hold up the others), and kept in step with the personas.
        fleet = await running.enter_async_context(Fleet(rt, role, web=web, loops=health.loops))
        health.by_bot = fleet.status
        _require_platform(role, fleet)
        app.router.routes.extend(fleet.routes())

        url = f"http://{settings.host}:{sock.getsockname()[1]}"
        log.info("role %s ready on %s", role, url)
        if on_ready:
            on_ready(url)
        await server_task


async def _stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task


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


async def _load_models(rt: Runtime) -> None:
    """The models of every enabled bot (the default bot's must load; another bot's that
    does not is one warning, and that bot answers with its ``unavailable`` line)."""
    personas = await rt.personas.get_many(await rt.personas.bot_ids())
    default = personas.get(rt.settings.default_bot) or await rt.personas.get(rt.settings.default_bot)
    await asyncio.to_thread(rt.registry.intent_model, default.models.intent)
    await asyncio.to_thread(rt.registry.reply_model, default.models.lm)
    for persona in personas.values():
        if not persona.enabled or persona.models == default.models:
            continue
        try:
            await asyncio.to_thread(rt.registry.intent_model, persona.models.intent)
            await asyncio.to_thread(rt.registry.reply_model, persona.models.lm)
        except ChatbotError as exc:
            log.warning("bot %s: its models did not load: %s", persona.bot_id, exc)


def _require_platform(role: Role, fleet: Fleet) -> None:
    """``adapter:X`` with no bot running X is one line (the first failure, or what to set)."""
    if role.name != "adapter":
        return
    found = [line for bots in fleet.status().values() for p, line in bots.items() if p == role.platform]
    if "running" in found:
        return
    if found:
        raise ConfigError(found[0])
    raise ConfigError(
        f"--role {role} needs {role.platform} credentials (see docs/platforms.md) "
        f"for a bot whose persona lists {role.platform}"
    )
