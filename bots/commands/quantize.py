"""``chatbot models quantize NAME``: an int8 copy of a model for CPU serving, measured
against the original on the same held-out data (registered in bots/cli.py).

The copy is a model of its own (``NAME-int8`` by default) that a persona names like any
other (``models.lm`` / ``models.intent``). The comparison (``core.evaluation.quantized``)
goes into the copy's ``metrics.json`` and model card and is printed as a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bots.config import model_folder
from bots.console import friendly, out
from core.errors import ConfigError


@friendly
def quantize(
    name: str = typer.Argument(..., help="model name under models/, or a model folder"),
    output: str = typer.Option(None, "--output", help="name or folder of the copy (default NAME-int8)"),
    compare: bool = typer.Option(
        True, "--compare/--no-compare", help="measure quality and speed against the original"
    ),
    data: Path = typer.Option(
        None,
        "--data",
        help="evaluation data (default: the held-out split the default build used: Bitext 5%% for "
        "the LM; Bitext 10%% + small talk + out-of-scope text for the classifier)",
    ),
    limit: int = typer.Option(32, "--limit", help="LM replies generated for ROUGE-L and speed"),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", help="LM reply length limit"),
    rounds: int = typer.Option(2, "--rounds", help="timed rounds per model (the best counts)"),
) -> None:
    """Write an int8 copy of an LM or intent model and compare it with the original."""
    from core.quantize import write_quantized_folder
    from core.registry import model_kind, write_metrics, write_model_card

    source = model_folder(name)
    kind = model_kind(source)
    if kind is None:
        raise ConfigError(f"no LM or intent model at {source}; `chatbot models list` shows the models")
    if min(limit, rounds, max_new_tokens) < 1:
        raise ConfigError("--limit, --rounds and --max-new-tokens must be >= 1")
    from bots.config import load_settings
    from core.device import configure_threads

    configure_threads(load_settings().torch_threads)
    target = model_folder(output) if output else source.with_name(f"{source.name}-int8")
    write_quantized_folder(source, target)
    out.print(f"[green]wrote[/green] {target} (int8 dynamic, made at load on CPU)")
    metrics: dict[str, Any] = {"quantized_from": source.name, "method": "int8-dynamic"}
    if compare:
        folders = {"fp32": source, "int8": target}
        result = _compare(kind, folders, data, target / "eval", limit, max_new_tokens, rounds)
        metrics |= {"comparison": result} | result["int8"]
        _print_table(result)
    write_metrics(target, metrics)
    write_model_card(
        target,
        kind=kind,
        title=f"{target.name}: int8 copy of {source.name}",
        sections={
            "Method": "Dynamic int8 quantisation of every Linear layer (torch.ao), applied at load on CPU; "
            "on a GPU the model runs unquantised in half precision.",
            **({"Against the original": _card_rows(metrics["comparison"])} if compare else {}),
        },
    )


def _compare(
    kind: str, folders: dict[str, Path], data: Path | None, out_dir: Path, limit: int, new: int, rounds: int
) -> dict[str, Any]:
    from core.evaluation.quantized import compare_intent, compare_lm

    if kind == "lm":
        dialogues = _lm_data(folders["fp32"], data)
        return compare_lm(folders, dialogues, out_dir, limit=limit, max_new_tokens=new, rounds=rounds)
    return compare_intent(folders, _intent_data(folders["fp32"], data), out_dir, rounds=rounds)


def _lm_data(folder: Path, data: Path | None) -> list[Any]:
    from core.training.config import default_lm_config
    from core.training.dialogues import load_dialogues
    from core.training.lm import split_dialogues

    if data is not None:
        return load_dialogues(data)
    return split_dialogues(default_lm_config(folder))[1]


def _intent_data(folder: Path, data: Path | None) -> list[Any]:
    from core.training.config import default_intent_config
    from core.training.data import load_examples
    from core.training.intent import split_examples

    if data is not None:
        return load_examples(data)
    return split_examples(default_intent_config(folder))[1]


def _print_table(result: dict[str, Any]) -> None:
    fp32, int8 = result["fp32"], result["int8"]
    out.print(f"{'':<24}{'fp32':>12}{'int8':>12}")
    for key in fp32:
        out.print(f"{key:<24}{fp32[key]:>12.4g}{int8.get(key, float('nan')):>12.4g}")
    speedups = ", ".join(f"{k} x{v}" for k, v in result["int8_speedup"].items())
    out.print(
        f"int8 speed-up: {speedups} ({result['examples']} held-out examples, {result['threads']} threads)"
    )


def _card_rows(result: dict[str, Any]) -> dict[str, str]:
    fp32, int8 = result["fp32"], result["int8"]
    rows = {k: f"{fp32[k]:.4g} -> {int8.get(k, float('nan')):.4g}" for k in fp32}
    rows |= {f"speed-up {k}": f"x{v}" for k, v in result["int8_speedup"].items()}
    rows["examples"] = str(result["examples"])
    return rows
