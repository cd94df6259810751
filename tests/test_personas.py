from __future__ import annotations

from pathlib import Path

import pytest

from bots.personas import default_personas, dump_persona, load_persona_file, parse_persona
from core.errors import ConfigError
from core.persona import Persona, PersonaStore


def test_default_bot_definitions_are_valid() -> None:
    [support] = default_personas()
    assert support.bot_id == "support"
    assert support.routing.routes["complaint"] == "escalate"


def test_round_trip_through_yaml() -> None:
    [support] = default_personas()
    assert parse_persona(dump_persona(support)) == support


def test_stream_reads_as_written_in_yaml() -> None:
    base = "bot_id: x\ndisplay_name: A\n"
    assert parse_persona(base).stream == "off"
    assert parse_persona(base + "stream: off\n").stream == "off"  # YAML 1.1 would say false
    assert parse_persona(base + "stream: edit\n").stream == "edit"
    with pytest.raises(ConfigError, match="field 'stream'"):
        parse_persona(base + "stream: on\n")  # true is no setting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "bot_id: x\ndisplay_name: A\ngeneration:\n  temperature: -1\n",
            "f.yaml:4: field 'generation.temperature'",
        ),
        ("bot_id: x\ndisplay_name: A\nbogus: 1\n", "f.yaml:3: field 'bogus'"),
        (
            "bot_id: x\ndisplay_name: A\nrouting:\n  routes:\n    foo: fly\n",
            "f.yaml:5: field 'routing.routes.foo'",
        ),
        ("bot_id: [x\n", "f.yaml:2: invalid YAML"),
        ("- a\n- b\n", "f.yaml:1: a persona must be a mapping"),
    ],
)
def test_invalid_yaml_names_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_persona(text, "f.yaml")
    assert str(info.value).startswith(expected)


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read persona file"):
        load_persona_file(tmp_path / "nope.yaml")


async def test_store_keeps_versions_and_seeds_without_overwriting(redis, keys) -> None:
    store = PersonaStore(redis, keys)
    base = Persona(bot_id="b1", display_name="One")
    assert await store.put_if_absent(base)
    await store.put(base.model_copy(update={"display_name": "Two"}), author="admin")
    assert not await store.put_if_absent(base)
    assert (await store.get("b1")).display_name == "Two"
    assert [v["author"] for v in await store.versions("b1")] == ["default", "admin"]
    with pytest.raises(ConfigError, match="chatbot persona import"):
        await store.get("missing")
