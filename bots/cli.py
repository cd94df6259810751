"""The ``chatbot`` command.

    chatbot run [--role ROLE]         all (engine + web chat + platforms), web, worker, adapter:X
    chatbot chat --user NAME          talk to the bot in the terminal (also piped)
    chatbot train lm|intent           train the models
    chatbot eval lm|intent MODEL DATA evaluation reports
    chatbot models list|build|quantize the model registry; build the defaults; int8 copies
    chatbot persona show|set|import|export|versions
    chatbot bots list|show|enable|disable   the bots served, on and off per platform
    chatbot send --platform P --user U TEXT a proactive message to a known customer
    chatbot history show|export|forget
    chatbot escalations list|show|claim|release|reply|resolve
    chatbot admin create-user|disable|enable|reset-password|list
    chatbot token create NAME         an API token for scripts (the desk API, the web chat)

Every user error is one red line and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from bots.commands.accounts import register as register_account_commands
from bots.commands.bots import app as bots_app
from bots.commands.dead_letters import app as dead_letters_app
from bots.commands.escalations import app as escalations_app
from bots.commands.send import send as send_message
from bots.config import Settings, load_settings
from bots.console import console, fail, friendly, out
from core.errors import ConfigError
from core.messages import Attachment

T = TypeVar("T")
LIVE_WORKER_IDLE_MS = 5_000  # a worker blocks on its read for at most a second

app = typer.Typer(
    help="Chat-bot framework: one engine behind Discord, Telegram, Slack and web chat.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train the dialogue LM or the intent classifier.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a trained model and write a report.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry under models/.", no_args_is_help=True)
persona_app = typer.Typer(help="Edit bot personas live (no restart needed).", no_args_is_help=True)
history_app = typer.Typer(help="A user's conversation history: show, export, forget.", no_args_is_help=True)
for sub, name in (
    (train_app, "train"),
    (eval_app, "eval"),
    (models_app, "models"),
    (persona_app, "persona"),
    (history_app, "history"),
    (escalations_app, "escalations"),
    (dead_letters_app, "dead-letters"),
    (bots_app, "bots"),
):
    app.add_typer(sub, name=name)


def _run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _settings() -> Settings:
    return load_settings()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Serving loads models, it does not train them: no weight-loading bars or load reports
    # between the replies.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# -- run and chat ------------------------------------------------------------------------
@app.command()
@friendly
def run(
    role: Annotated[
        str, typer.Option(help="all, web, worker, adapter:telegram|slack|discord (docs/scaling.md)")
    ] = "all",
    host: Annotated[str | None, typer.Option(help="bind address (CHATBOT_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (CHATBOT_PORT)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve one role: by default everything (engine, web chat, configured platforms)."""
    from bots.roles import Role
    from bots.serve import serve

    chosen = Role.parse(role)
    _setup_logging(verbose)
    overrides: dict[str, Any] = {}
    if host:
        overrides["CHATBOT_HOST"] = host
    if port is not None:
        overrides["CHATBOT_PORT"] = port
    settings = load_settings(**overrides)
    if chosen.runs_engine:  # before any model loads
        from core.device import configure_threads

        configure_threads(settings.torch_threads)

    def ready(url: str) -> None:
        what = "open the web chat at" if chosen.runs_web_chat else f"{chosen} serving probes on"
        out.print(f"[bold green]ready[/]: {what} [link={url}]{url}[/link]  (Ctrl-C stops)")

    try:
        _run(serve(settings, role=chosen, on_ready=ready))
    except OSError as exc:
        fail(
            f"cannot serve on {settings.host}:{settings.port} ({exc.strerror or exc}); "
            "set CHATBOT_PORT or --port to a free port"
        )


@app.command()
@friendly
def chat(
    user: Annotated[str, typer.Option(help="who you are in the conversation")] = "console-user",
    bot: Annotated[str | None, typer.Option(help="bot id (default CHATBOT_DEFAULT_BOT)")] = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="run an engine worker in this process; default: only when no worker is running",
        ),
    ] = None,
) -> None:
    """Chat in the terminal; with piped input, one reply per line, exit at end of input.

    The console is a client like the web chat: it queues messages and waits for replies.
    When no `chatbot run` worker is answering it starts one in this process."""
    from adapters.console import ConsoleAdapter
    from bots.roles import consumer_name
    from bots.runtime import Runtime
    from core.bus import ENGINE_GROUP
    from core.upkeep import StreamUpkeep

    settings = _settings()
    _setup_logging(False)

    async def main() -> None:
        async with Runtime(settings) as rt, contextlib.AsyncExitStack() as running:
            bot_id = bot or settings.default_bot
            persona = await rt.personas.get(bot_id)
            if not persona.enabled:
                fail(f"bot {bot_id!r} is disabled (`chatbot bots enable {bot_id}`)")
            if "console" not in persona.platforms:
                hint = f"`chatbot bots enable {bot_id} --platform console`"
                fail(f"bot {bot_id!r} does not serve the console ({hint})")
            live = await rt.bus.live_consumers(rt.keys.intake(), ENGINE_GROUP, LIVE_WORKER_IDLE_MS)
            if worker is False and not live:
                fail(
                    "no engine worker is running: start `chatbot run` (or `chatbot run --role worker`), "
                    "or drop --no-worker"
                )
            if worker or (worker is None and not live):
                from core.device import configure_threads

                configure_threads(settings.torch_threads)
                await asyncio.to_thread(rt.registry.intent_model, persona.models.intent)
                await asyncio.to_thread(rt.registry.reply_model, persona.models.lm)
                name = consumer_name("worker")
                await running.enter_async_context(rt.engine(name))
                upkeep = StreamUpkeep(rt.bus, rt.keys.intake(), ENGINE_GROUP, name, settings.upkeep)
                await running.enter_async_context(upkeep)
            console = ConsoleAdapter(
                rt.bus, bot_id=bot_id, personas=rt.personas, consumer=consumer_name("console")
            )
            async with console:
                greeting = [option.as_reply() for option in persona.quick_replies.greeting]
                await console.chat(
                    user, greeting=persona.greeting, bot_name=persona.display_name, choices=greeting
                )

    _run(main())


# -- persona -----------------------------------------------------------------------------
def _with_runtime(fn: Callable[[Any], Awaitable[T]]) -> T:
    from bots.runtime import Runtime

    async def main() -> T:
        async with Runtime(_settings()) as rt:
            return await fn(rt)

    return _run(main())


@persona_app.command("show")
@friendly
def persona_show(bot: Annotated[str, typer.Argument(help="bot id")] = "support") -> None:
    """Print the live persona as YAML."""
    from bots.personas import dump_persona

    out.print(dump_persona(_with_runtime(lambda rt: rt.personas.get(bot))), end="", highlight=False)


@persona_app.command("export")
@friendly
def persona_export(
    bot: Annotated[str, typer.Argument(help="bot id")] = "support",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default stdout)")
    ] = None,
) -> None:
    """Write the live persona to a YAML file (or stdout)."""
    from bots.personas import dump_persona

    text = dump_persona(_with_runtime(lambda rt: rt.personas.get(bot)))
    if output:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@persona_app.command("import")
@friendly
def persona_import(file: Annotated[Path, typer.Argument(help="persona YAML file")]) -> None:
    """Validate a persona YAML file and make it the live copy."""
    from bots.personas import load_persona_file

    persona = load_persona_file(file)
    version = _with_runtime(lambda rt: rt.personas.put(persona, author=f"import:{file.name}"))
    out.print(f"persona {persona.bot_id} is live (version {version})")


@persona_app.command("set")
@friendly
def persona_set(
    bot: Annotated[str, typer.Argument(help="bot id")],
    field: Annotated[
        str, typer.Argument(help="dotted field, e.g. facts.Website Name or generation.temperature")
    ],
    value: Annotated[str, typer.Argument(help="new value (YAML: numbers, true/false, lists work)")],
) -> None:
    """Change one field of the live persona; the next message uses it."""
    from pydantic import ValidationError

    from core.persona import Persona

    async def change(rt: Any) -> int:
        current = (await rt.personas.get(bot)).model_dump(mode="json")
        node = current
        parts = field.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"persona has no section {part!r} (in {field!r})")
            node = node[part]
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError:
            node[parts[-1]] = value
        try:
            persona = Persona.model_validate(current)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ConfigError(f"field '{field}': {error['msg']}") from None
        return await rt.personas.put(persona, author="cli:set")

    version = _with_runtime(change)
    out.print(f"{bot}.{field} updated (version {version})")


@persona_app.command("versions")
@friendly
def persona_versions(bot: Annotated[str, typer.Argument(help="bot id")] = "support") -> None:
    """List saved versions of a persona (who changed it, when)."""
    import time

    for number, record in enumerate(_with_runtime(lambda rt: rt.personas.versions(bot)), 1):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record["at"])))
        out.print(f"{number:>3}  {when}  {record['author']}")


# -- history -----------------------------------------------------------------------------
UserOpt = Annotated[str, typer.Option("--user", help="the platform user id")]
PlatformOpt = Annotated[str, typer.Option("--platform", help="web, console, telegram, slack, discord")]


@history_app.command("show")
@friendly
def history_show(user: UserOpt, platform: PlatformOpt = "console") -> None:
    """Print a user's stored conversations."""
    data = _with_runtime(lambda rt: rt.history.export_user(platform, user))
    if not data:
        out.print(f"no history for {platform} user {user!r}")
    for key, turns in data.items():
        out.print(f"[bold]{key}[/]")
        for t in turns:
            out.print(
                f"  [{'cyan' if t['role'] == 'user' else 'green'}]{t['role']:>5}[/]: {t['text']}",
                highlight=False,
            )
            for attached in t.get("attachments") or []:
                out.print(
                    f"         + {Attachment.from_dict(attached).describe()}", highlight=False, markup=False
                )


@history_app.command("export")
@friendly
def history_export(
    user: UserOpt,
    platform: PlatformOpt = "console",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Everything stored about a user as JSON (a data-access request)."""
    data = _with_runtime(lambda rt: rt.history.export_user(platform, user))
    text = json.dumps(
        {"platform": platform, "user": user, "conversations": data}, indent=2, ensure_ascii=False
    )
    if output:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@history_app.command("forget")
@friendly
def history_forget(
    user: UserOpt,
    platform: PlatformOpt = "console",
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete everything stored about a user (right to erasure)."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete all data about {platform} user {user!r}?", abort=True)

    async def forget(rt: Any) -> tuple[int, int]:  # streams first: the engine may still write history
        entries = await rt.bus.forget_user(platform, user)
        return await rt.history.forget_user(platform, user), entries

    removed, entries = _with_runtime(forget)
    out.print(f"forgot {platform} user {user!r}: {removed} keys deleted, {entries} stream entries deleted")


# -- models ------------------------------------------------------------------------------
@models_app.command("list")
@friendly
def models_list() -> None:
    """Models under the models folder, with their headline metrics."""
    from core.registry import ModelRegistry

    settings = _settings()
    infos = ModelRegistry(settings.models_dir).list()
    if not infos:
        out.print(f"no models in {settings.models_dir}; build the defaults with `chatbot models build`")
    for info in infos:
        keys = ("accuracy", "macro_f1", "val_perplexity", "perplexity", "best_val_loss")
        headline = ", ".join(
            f"{k}={info.metrics[k]:.4g}" for k in keys if isinstance(info.metrics.get(k), (int, float))
        )
        out.print(f"{info.name:<24} {info.kind:<7} {headline}")


@models_app.command("build")
@friendly
def models_build(force: Annotated[bool, typer.Option(help="rebuild even if present")] = False) -> None:
    """Build the default models from the bundled data when models/ lacks them."""
    from bots.commands.build import build_default_models

    build_default_models(_settings().models_dir, force=force, console=out)


def _register_model_commands() -> None:
    from bots.commands.intent import eval_intent, train_intent

    train_app.command("intent")(train_intent)
    eval_app.command("intent")(eval_intent)
    from bots.commands.lm import eval_lm, train_lm

    train_app.command("lm")(train_lm)
    eval_app.command("lm")(eval_lm)
    from bots.commands.quantize import quantize

    models_app.command("quantize")(quantize)


_register_model_commands()
register_account_commands(app)
app.command("send")(send_message)

if __name__ == "__main__":  # pragma: no cover
    app()
