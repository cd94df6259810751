"""Persona files: YAML in, validated :class:`Persona` out, errors with file and line.

Default bot definitions ship in ``bots/definitions/``; ``CHATBOT_BOTS_DIR`` adds more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.errors import ConfigError
from core.persona import Persona

DEFINITIONS = Path(__file__).resolve().parent / "definitions"


def parse_persona(text: str, source: str = "<persona>") -> Persona:
    """Validate persona YAML; a bad value raises ConfigError naming file, line and field."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: a persona must be a mapping of fields (bot_id, display_name, ...)")
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = [p for p in error["loc"] if p != "__root__"]
        line = _line_of(node, path)
        field = ".".join(str(p) for p in path) or "(top level)"
        raise ConfigError(f"{source}:{line}: field '{field}': {error['msg']}") from None


def load_persona_file(path: Path | str) -> Persona:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read persona file {path}: {exc.strerror}") from None
    return parse_persona(text, str(path))


def dump_persona(persona: Persona) -> str:
    return yaml.safe_dump(persona.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100)


def default_personas(extra_dir: Path | None = None) -> list[Persona]:
    """The shipped bot definitions, plus any ``*.yaml`` in ``extra_dir``."""
    files = sorted(DEFINITIONS.glob("*.yaml"))
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise ConfigError(f"CHATBOT_BOTS_DIR={extra_dir} is not a folder")
        files += sorted(extra_dir.glob("*.y*ml"))
    return [load_persona_file(f) for f in files]


def _line_of(node: Any, path: list[Any]) -> int:
    """The 1-based line of the YAML node at ``path`` (or of its nearest parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
            if child is None:  # the key itself is what's wrong (extra field)
                key = next((k for k, _v in node.value if k.value == str(part)), None)
                return key.start_mark.line + 1 if key is not None else line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            return line
        node, line = child, child.start_mark.line + 1
    return line
