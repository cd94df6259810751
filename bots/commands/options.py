"""Typer options made from a training config's dataclass fields.

A default or a help text is written once, on the config field (``core/training/config.py``,
``metadata["help"]``); ``chatbot train lm`` and ``chatbot train intent`` both get their
options here, one per field: ``--batch-size`` for ``batch_size``, ``--x/--no-x`` for a
flag, plus the names in ``ALIASES``. ``--default`` starts from the ``chatbot models
build`` recipe; options given on the command line override it.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

C = TypeVar("C")

ALIASES: dict[str, tuple[str, ...]] = {
    "train_file": ("--data",),
    "output_dir": ("--output", "-o"),
    "learning_rate": ("--lr", "--learning-rate"),
    "time_budget_s": ("--time-budget",),
}


def _option(f: dataclasses.Field[Any], hint: Any) -> Any:
    flag = f.name.replace("_", "-")
    if hint is bool:
        names: tuple[str, ...] = (f"--{flag}/--no-{flag}",)
    else:
        names = ALIASES.get(f.name, (f"--{flag}",))
    return typer.Option(f.default, *names, help=f.metadata.get("help", ""))


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether the option was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"  # typer ships its own click enum


def config_command(
    config: type[C], recipe: Callable[[Path], C], recipe_help: str
) -> Callable[[Callable[[C], None]], Callable[..., None]]:
    """Turn ``fn(cfg)`` into a typer command whose options are ``config``'s fields."""
    hints = typing.get_type_hints(config)
    fields = [f for f in dataclasses.fields(config) if f.init]  # type: ignore[arg-type]
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ctx", keyword, annotation=typer.Context)]
    params += [
        inspect.Parameter(f.name, keyword, default=_option(f, hints[f.name]), annotation=hints[f.name])
        for f in fields
    ]
    params.append(
        inspect.Parameter(
            "default", keyword, default=typer.Option(False, "--default", help=recipe_help), annotation=bool
        )
    )

    def decorate(fn: Callable[[C], None]) -> Callable[..., None]:
        def command(ctx: typer.Context, default: bool, **values: Any) -> None:
            if default:
                given = {k: v for k, v in values.items() if _typed(ctx, k)}
                fn(dataclasses.replace(recipe(values["output_dir"]), **given))  # type: ignore[type-var]
            else:
                fn(config(**values))

        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command

    return decorate
