"""``chatbot escalations``: the desk's ticket actions from the terminal, end to end on a
real Redis, against the same data the engine and the web desk use."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bots.cli import app
from core.bus import Bus
from core.conversation import Conversations
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey
from core.tickets import Tickets, TicketStatus

runner = CliRunner()
CONV = ConversationKey("support", "telegram", "42", "42")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, keys: Keys, tmp_path: Path) -> Keys:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHATBOT_NAMESPACE", keys.namespace)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("USER", "sam")
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return keys


async def cli(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.output


async def test_escalations_commands_end_to_end(env: Keys, redis: Any, keys: Keys) -> None:
    history = History(redis, keys)
    tickets = Tickets(redis, keys, bus=Bus(redis, keys), conversations=Conversations(redis, keys, history))
    await history.append_turns(CONV, [Turn("user", "I want a person <b>now</b>", display_name="Ada")])
    async with redis.pipeline(transaction=True) as pipe:
        ticket_id, _ = tickets.queue_open(
            pipe, CONV, previous=None, reason="asked", detail="asked for a person", display_name="Ada [red]"
        )
        await pipe.execute()

    code, out = await cli("escalations", "list")
    assert code == 0 and ticket_id in out and "open: 1" in out and "Ada [red]" in out
    code, out = await cli("escalations", "claim", ticket_id, "--agent", "dana")
    assert code == 0 and "claimed by dana" in out
    code, out = await cli("escalations", "claim", ticket_id, "--agent", "eve")
    assert code == 2 and "claimed by dana" in out and "Traceback" not in out
    code, out = await cli("escalations", "reply", ticket_id, "Hello, Dana here.", "--agent", "dana")
    assert code == 0, out
    [(_id, reply)] = await Bus(redis, keys).read_outbound("telegram", "support", "t", block_ms=10)
    assert (reply.chat_id, reply.text) == ("42", "Hello, Dana here.")

    code, out = await cli("escalations", "show", ticket_id)
    assert code == 0 and "I want a person <b>now</b>" in out and "agent dana: Hello, Dana here." in out
    assert "bot  opened" in out and "dana  replied" in out

    code, out = await cli("escalations", "release", ticket_id, "--agent", "dana")
    assert code == 0 and "back in the queue" in out
    assert (await tickets.get(ticket_id)).status is TicketStatus.OPEN
    code, out = await cli("escalations", "resolve", ticket_id)  # --agent defaults to $USER
    assert code == 0 and "resolved" in out
    assert (await tickets.audit(ticket_id))[-1].actor == "sam"
    assert not await redis.exists(keys.handoff(CONV))

    code, out = await cli("escalations", "list")
    assert code == 0 and "no open escalations" in out and "resolved: 1" in out
    code, out = await cli("escalations", "list", "--status", "resolved")
    assert ticket_id in out
    code, out = await cli("escalations", "reply", ticket_id, "late", "--agent", "dana")
    assert code == 2 and "resolved" in out


async def test_escalations_bad_input_is_one_line(env: Keys, redis: Any) -> None:
    code, out = await cli("escalations", "list")
    assert code == 0 and "no open escalations" in out
    code, out = await cli("escalations", "resolve", "nope")
    assert code == 2 and "no ticket 'nope'" in out and "Traceback" not in out
    code, out = await cli("escalations", "list", "--status", "bogus")
    assert code == 2 and "unknown status 'bogus'" in out
    code, out = await cli("escalations", "claim", "nope", "--agent", " ")
    assert code == 2 and "--agent" in out
