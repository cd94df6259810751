"""Terminal output shared by every ``chatbot`` command: results on stdout, errors on
stderr as one red line with exit code 2, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from core.errors import ChatbotError

T = TypeVar("T")
console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn ChatbotError into one red line; Ctrl-C into a quiet exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ChatbotError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper
