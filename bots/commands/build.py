"""``chatbot models build``: the default models, trained from the bundled Bitext data
when ``models/`` lacks them (the first ``make run``)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from core.registry import model_kind

INTENT_NAME = "intent-default"
LM_NAME = "lm-default"


def build_default_models(
    models_dir: Path, *, force: bool = False, console: Console | None = None
) -> list[str]:
    """Train whichever default model is missing; returns the names built."""
    console = console or Console()
    built: list[str] = []
    plan = [(INTENT_NAME, "intent", _train_intent), (LM_NAME, "lm", _train_lm)]
    for name, kind, train in plan:
        folder = models_dir / name
        # metrics.json is written last: without it the folder is an interrupted build.
        complete = model_kind(folder) == kind and (folder / "metrics.json").is_file()
        if not force and complete:
            console.print(f"[green]✓[/] {kind} model {name} present ({folder})")
            continue
        console.print(f"[bold]building the default {kind} model[/] {name} from the bundled data…")
        start = time.monotonic()
        (folder / "metrics.json").unlink(missing_ok=True)  # an interrupted rebuild stays incomplete
        train(folder)
        console.print(f"[green]✓[/] {name} built in {time.monotonic() - start:.0f}s ({folder})")
        built.append(name)
    return built


def _train_intent(folder: Path) -> None:
    from core.training.config import default_intent_config
    from core.training.intent import train_intent

    train_intent(default_intent_config(folder))


def _train_lm(folder: Path) -> None:
    from bots.commands.lm import train_and_evaluate_lm
    from core.training.config import default_lm_config

    train_and_evaluate_lm(default_lm_config(folder))
