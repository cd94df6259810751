"""The ``chatbot`` command: persona, history, and its error lines (escalations: test_escalations_cli)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bots.cli import app
from core.history import History, Turn
from core.keys import Keys
from core.messages import Attachment, ConversationKey

runner = CliRunner()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, keys: Keys, tmp_path: Path) -> Keys:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHATBOT_NAMESPACE", keys.namespace)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return keys


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_persona_show_set_and_versions(env, redis) -> None:
    code, out = cli("persona", "show", "support")
    assert code == 0 and "display_name: Ava" in out
    code, out = cli("persona", "set", "support", "facts.Website Name", "shop.example")
    assert code == 0, out
    code, out = cli("persona", "set", "support", "generation.temperature", "0.3")
    assert code == 0, out
    code, out = cli("persona", "show", "support")
    assert "Website Name: shop.example" in out and "temperature: 0.3" in out
    code, out = cli("persona", "versions", "support")
    assert out.count("cli:set") == 2 and "default" in out


def test_persona_set_rejects_bad_values_in_one_line(env, redis) -> None:
    code, out = cli("persona", "set", "support", "generation.temperature", "--", "-2")
    assert code == 2
    assert "field 'generation.temperature'" in out and "Traceback" not in out
    code, out = cli("persona", "set", "support", "nosuch.section", "x")
    assert code == 2 and "no section 'nosuch'" in out


def test_persona_set_quick_replies_as_the_docs_show(env, redis) -> None:
    value = "[{label: Talk to a person, intent: contact_human_agent}]"
    code, out = cli("persona", "set", "support", "quick_replies.rephrase", value)
    assert code == 0, out
    code, out = cli("persona", "show", "support")
    assert "- label: Talk to a person\n    intent: contact_human_agent" in out
    code, out = cli("persona", "set", "support", "quick_replies.help", "[{label: " + "x" * 41 + "}]")
    assert code == 2 and "field 'quick_replies.help'" in out and "40 characters" in out


async def test_history_show_lists_attachments(env, redis, keys: Keys) -> None:
    conv = ConversationKey("support", "telegram", "42", "42")
    photo = Attachment(kind="photo", size=2048, file_id="AgAD[b]")  # [b] is text, not rich markup
    await History(redis, keys).append_turns(conv, [Turn("user", "", attachments=(photo,))])
    code, out = await asyncio.to_thread(cli, "history", "show", "--platform", "telegram", "--user", "42")
    assert code == 0 and "+ photo, 2.0 KB, file id AgAD[b]" in out


def test_persona_import_and_export(env, redis, tmp_path: Path) -> None:
    good = tmp_path / "shop.yaml"
    good.write_text("bot_id: shop\ndisplay_name: Sam\ngreeting: Hey!\n")
    code, out = cli("persona", "import", str(good))
    assert code == 0 and "shop is live" in out
    code, out = cli("persona", "export", "shop")
    assert "display_name: Sam" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("bot_id: shop\ndisplay_name: Sam\nrouting:\n  confidence_threshold: 7\n")
    code, out = cli("persona", "import", str(bad))
    assert code == 2 and f"{bad}:4: field 'routing.confidence_threshold'" in " ".join(out.split())


async def test_history_forget_removes_data(env, redis, keys: Keys) -> None:
    conv = ConversationKey("support", "telegram", "42", "alice")
    await History(redis, keys).append_turns(conv, [Turn("user", "my parcel?"), Turn("bot", "on its way")])
    code, out = await asyncio.to_thread(cli, "history", "export", "--user", "alice", "--platform", "telegram")
    assert code == 0 and "my parcel?" in out
    code, out = await asyncio.to_thread(
        cli, "history", "forget", "--user", "alice", "--platform", "telegram", "--yes"
    )
    assert code == 0 and "1 keys deleted" in out
    assert await redis.exists(keys.history(conv)) == 0


def test_redis_down_is_one_line_naming_redis_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.chdir(tmp_path)
    code, out = cli("persona", "show")
    assert code == 2
    assert "REDIS_URL=redis://127.0.0.1:1/0" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) <= 2  # one line (rich may wrap at 80 columns)


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHATBOT_HISTORY_MAX_TURNS", "lots")
    monkeypatch.chdir(tmp_path)
    code, out = cli("persona", "show")
    assert code == 2 and "CHATBOT_HISTORY_MAX_TURNS" in out


def test_missing_models_tell_how_to_build_them(env, redis) -> None:
    code, out = cli("chat", "--user", "x")
    assert code == 2
    assert "chatbot train intent" in out and "Traceback" not in out
    code, out = cli("models", "list")
    assert code == 0 and "chatbot models build" in out


def test_busy_port_is_one_line_before_anything_loads(env, redis) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out = cli("run", "--port", str(port))
    assert code == 2 and f"cannot serve on 127.0.0.1:{port}" in out and "CHATBOT_PORT" in out
    assert "Traceback" not in out
