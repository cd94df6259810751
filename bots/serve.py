"""``chatbot run``: the engine, the web app and every configured adapter in one process.

Each adapter starts on its own: one that fails (a bad token, say) is reported in one
line and stopped, while the engine, the web chat and the other adapters keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.base import Adapter
from adapters.webchat import WebChatAdapter
from bots.config import Settings
from bots.desk.app import build_desk, webchat_config
from bots.desk.headers import SecurityHeaders
from bots.platforms import configured_adapters
from bots.runtime import Runtime
from core.errors import ChatbotError

log = logging.getLogger(__name__)


def build_app(
    web: WebChatAdapter,
    adapters: list[Adapter],
    extra_routes: list[BaseRoute] | None = None,
    failed: dict[str, str] | None = None,
) -> Starlette:
    async def healthz(_: Request) -> Response:
        status = {a.platform: ("running" if a.running else (a.error or "stopped")) for a in [web, *adapters]}
        status.update(failed or {})
        return JSONResponse({"ok": True, "adapters": status})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/metrics", metrics), *web.routes()]
    for adapter in adapters:
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


async def serve(settings: Settings, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Run everything until SIGINT/SIGTERM; raises OSError when the port is taken."""
    with _listen(settings.host, settings.port) as sock:
        await _serve(settings, sock, on_ready)


async def _serve(settings: Settings, sock: socket.socket, on_ready: Callable[[str], None] | None) -> None:
    async with Runtime(settings) as rt, contextlib.AsyncExitStack() as running:
        persona = await rt.personas.get(settings.default_bot)
        # Load the models before accepting traffic: the first customer should not wait.
        await asyncio.to_thread(rt.registry.intent_model, persona.models.intent)
        await asyncio.to_thread(rt.registry.reply_model, persona.models.lm)

        # Started in order, stopped in reverse: adapters (and their outboxes), then the engine.
        await running.enter_async_context(rt.engine())
        desk = build_desk(rt)
        web = WebChatAdapter(
            rt.bus,
            bot_id=settings.default_bot,
            personas=rt.personas,
            config=webchat_config(settings),
            hooks=desk.webchat_hooks(),
        )
        await running.enter_async_context(web)
        platforms = configured_adapters(settings, rt.bus, rt.personas, serves=list(persona.platforms))
        adapters = platforms.adapters
        for adapter in adapters:
            running.push_async_callback(_stop, adapter)
        # Side by side: a platform that is slow to answer does not hold up the others.
        await asyncio.gather(*(_start(adapter) for adapter in adapters))

        app = build_app(web, adapters, extra_routes=desk.routes(), failed=platforms.failed)
        server = uvicorn.Server(
            uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="off")
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        server_task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
        while not server.started and not server_task.done():
            await asyncio.sleep(0.05)
        if server_task.done():
            server_task.result()  # raises the bind error
        url = f"http://{settings.host}:{sock.getsockname()[1]}"
        if on_ready:
            on_ready(url)
        await server_task


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
