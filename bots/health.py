"""``/healthz`` (liveness) and ``/readyz`` (readiness) of one ``chatbot run`` process.

Liveness says only whether the process is worth keeping: its event loop answers and
the loops its role runs (engine, stream upkeep, outboxes) have not died. It never
depends on Redis or on models, so a slow first model build or a Redis outage does not
make an orchestrator kill the process (that would not fix either).

Readiness says whether to send it traffic: Redis answers within a second, the models
of its role are loaded, and the intake backlog is under ``CHATBOT_READY_MAX_LAG``.
Either answers 503 with the failing parts when not ok. ``/healthz`` lists the adapters
of every bot (``bots``) and, as ``adapters``, the default bot's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.base import Adapter
from core.bus import ENGINE_GROUP, Bus

REDIS_PING_TIMEOUT_S = 1.0


@dataclass
class Health:
    """What the probes look at; ``bots.serve`` fills it in as the role starts."""

    bus: Bus
    role: str
    max_lag: int = 0  # 0 = no bound
    needs_models: bool = False
    models_loaded: bool = False
    loops: dict[str, Callable[[], bool]] = field(default_factory=dict)  # name -> alive?
    adapters: list[Adapter] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # platform -> why it was left out
    by_bot: Callable[[], dict[str, dict[str, str]]] | None = None  # bot -> platform -> status
    default_bot: str = "support"

    def routes(self) -> list[BaseRoute]:
        return [Route("/healthz", self.healthz), Route("/readyz", self.readyz)]

    async def healthz(self, _: Request) -> Response:
        dead = [name for name, alive in self.loops.items() if not alive()]
        body = {
            "ok": not dead,
            "role": self.role,
            "loops": {name: "dead" if name in dead else "running" for name in self.loops},
            "adapters": self._adapters(),
        }
        if self.by_bot is not None:  # `adapters`: the default bot's, as before several bots
            bots = self.by_bot()
            body.update(adapters=bots.get(self.default_bot, {}), bots=bots)
        return JSONResponse(body, status_code=503 if dead else 200)

    async def readyz(self, _: Request) -> Response:
        problems: dict[str, str] = {}
        if self.needs_models and not self.models_loaded:
            problems["models"] = "loading"
        lag: int | None = None
        try:
            await asyncio.wait_for(self.bus.redis.ping(), REDIS_PING_TIMEOUT_S)
            lag = await self._intake_lag()
        except (RedisError, OSError, TimeoutError) as exc:
            problems["redis"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if lag is not None and self.max_lag and lag > self.max_lag:
            problems["lag"] = f"{lag} intake entries waiting (bound {self.max_lag})"
        body = {"ok": not problems, "role": self.role, "intake_lag": lag, "problems": problems}
        return JSONResponse(body, status_code=503 if problems else 200)

    async def _intake_lag(self) -> int:
        for group in await asyncio.wait_for(self.bus.stats(self.bus.keys.intake()), REDIS_PING_TIMEOUT_S):
            if group.group == ENGINE_GROUP:
                return group.lag
        return 0

    def _adapters(self) -> dict[str, str]:
        status = {a.platform: "running" if a.running else (a.error or "stopped") for a in self.adapters}
        status.update(self.failed)
        return status
