"""``chatbot bots``: the bots this deployment serves, and switching them on and off.

    chatbot bots list                       every bot, and where it is served now
    chatbot bots show BOT                   its platforms, paths and credential variables
    chatbot bots enable|disable BOT [--platform P]

``disable`` saves the persona with ``enabled: false`` (or without P in ``platforms``); every
running ``chatbot run`` stops that bot's adapters within ``CHATBOT_RECONCILE_INTERVAL``
seconds and the other bots keep answering; ``enable`` undoes it. A platform shows as
``running`` while some process reads its outbound stream. ``show`` prints the names of
the variables holding the secrets and whether each is set here, never a value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, get_args

import typer

from bots.config import load_settings
from bots.console import friendly, out
from bots.credentials import SECRET_PLATFORMS, Environment, resolve
from core.bus import DELIVERY_GROUP
from core.errors import ConfigError
from core.persona import Persona, Platform
from core.proactive import LIVE_IDLE_MS

T = TypeVar("T")
PLATFORMS: tuple[str, ...] = get_args(Platform)

app = typer.Typer(help="The bots this deployment serves: list, show, enable, disable.", no_args_is_help=True)
BotArg = Annotated[str, typer.Argument(help="bot id (see `chatbot bots list`)")]
PlatformOpt = Annotated[
    str | None, typer.Option("--platform", help=f"only this platform: {', '.join(PLATFORMS)}")
]


def _with_runtime(fn: Callable[[Any], Awaitable[T]]) -> T:
    from bots.runtime import Runtime

    async def main() -> T:
        async with Runtime(load_settings()) as rt:
            return await fn(rt)

    return asyncio.run(main())


async def _states(rt: Any, persona: Persona, env: Environment) -> dict[str, str]:
    """platform -> running | no credentials | not running | off (the bot or platform)."""
    states = {}
    for platform in PLATFORMS:
        if not persona.enabled or platform not in persona.platforms:
            states[platform] = "off"
        elif platform == "console":
            states[platform] = "on"  # `chatbot chat` is the console's process
        elif await rt.bus.live_consumers(
            rt.keys.outbound(platform, persona.bot_id), DELIVERY_GROUP, LIVE_IDLE_MS
        ):
            states[platform] = "running"
        elif platform in SECRET_PLATFORMS and not resolve(env, persona, platform).configured:
            states[platform] = "no credentials"
        else:
            states[platform] = "not running"
    return states


@app.command("list")
@friendly
def list_bots() -> None:
    """Every bot with a persona, on or off, and where it is running now."""

    async def overview(rt: Any) -> list[tuple[Persona, dict[str, str]]]:
        env = Environment(rt.settings)
        personas = await rt.personas.get_many(await rt.personas.bot_ids())
        return [(p, await _states(rt, p, env)) for p in personas.values()]

    for persona, states in _with_runtime(overview):
        served = ", ".join(f"{p} {s}" for p, s in states.items() if s != "off") or "nowhere"
        status = "enabled " if persona.enabled else "disabled"
        out.print(
            f"{persona.bot_id:<20} {status}  {persona.display_name}: {served}",
            highlight=False,
            soft_wrap=True,
        )


@app.command("show")
@friendly
def show_bot(bot: BotArg) -> None:
    """A bot's platforms, paths and credential variables (set or not here; never values)."""

    async def details(rt: Any) -> tuple[Persona, dict[str, str], Environment]:
        env = Environment(rt.settings)
        persona = await rt.personas.get(bot)
        return persona, await _states(rt, persona, env), env

    persona, states, env = _with_runtime(details)
    default = persona.bot_id == env.settings.default_bot
    out.print(
        f"bot {persona.bot_id} ({persona.display_name}): {'enabled' if persona.enabled else 'disabled'}"
    )
    for platform, state in states.items():
        out.print(f"  {platform:<9} {state}", highlight=False, soft_wrap=True)
    out.print(
        f"  web chat: /b/{persona.bot_id}/" + ("  and /" if default else ""), highlight=False, soft_wrap=True
    )
    slack = f"/slack/{persona.bot_id}/events" + ("  and /slack/events" if default else "")
    out.print(f"  Slack Events API: {slack}", highlight=False, soft_wrap=True)
    for platform in SECRET_PLATFORMS:
        status = resolve(env, persona, platform).status()
        named = ", ".join(f"{name} ({'set' if ok else 'unset'})" for name, ok in status.items())
        out.print(
            f"  {platform} variables: {named or 'none named (credentials.' + platform + ')'}", highlight=False
        )


def _switch(bot: str, platform: str | None, enabled: bool) -> None:
    if platform is not None and platform not in PLATFORMS:
        raise ConfigError(f"unknown platform {platform!r}; use one of {', '.join(PLATFORMS)}")

    async def change(rt: Any) -> tuple[bool, int]:
        persona = await rt.personas.get(bot)
        if platform is None:
            updated = persona.model_copy(update={"enabled": enabled})
        else:
            listed = [p for p in persona.platforms if p != platform] + ([platform] if enabled else [])
            updated = Persona.model_validate({**persona.model_dump(), "platforms": listed})
        if updated == persona:
            return False, 0
        return True, await rt.personas.put(updated, author="cli:bots")

    changed, version = _with_runtime(change)
    what = f"{bot} on {platform}" if platform else bot
    state = "enabled" if enabled else "disabled"
    if not changed:
        out.print(f"{what} was already {state}")
    else:
        out.print(f"{what} {state} (persona version {version}); running processes follow within seconds")


@app.command("enable")
@friendly
def enable(bot: BotArg, platform: PlatformOpt = None) -> None:
    """Serve the bot again (or add one platform to its persona's ``platforms``)."""
    _switch(bot, platform, True)


@app.command("disable")
@friendly
def disable(bot: BotArg, platform: PlatformOpt = None) -> None:
    """Stop serving the bot everywhere (or on one platform), without restarting anything."""
    _switch(bot, platform, False)
