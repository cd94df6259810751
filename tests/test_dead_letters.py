"""Poison entries: an entry that fails ``max_attempts`` times goes to the dead-letter
stream with its error, its customer gets the "unavailable" text, everyone else is
answered; `chatbot dead-letters list|retry|drop` looks after the stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from typer.testing import CliRunner

from bots.cli import app
from core.engine import EngineConfig
from core.keys import Keys
from core.messages import IncomingMessage, Reply, Route
from core.persona import Persona, PersonaStore
from core.protocols import GenerationRequest
from core.retry import Backoff
from tests.helpers import wait_for
from tests.scripted_models import ScriptedProvider, ScriptedReplies, build_engine


class Exploding(ScriptedReplies):
    """Raises (not a ChatbotError: a bug) whenever a request's text says ``boom``."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        if any("boom" in r.text for r in requests):
            raise ValueError("the model fell over")
        return super().generate(requests)


def msg(text: str, user: str) -> IncomingMessage:
    return IncomingMessage("support", "web", user, user, text)


async def replies(redis, keys: Keys) -> list[Reply]:
    return [Reply.from_json(f["data"]) for _, f in await redis.xrange(keys.outbound("web", "support"))]


@pytest.fixture
async def dead(redis, keys: Keys) -> tuple[IncomingMessage, list[IncomingMessage]]:
    """Three customers, one of whom sends a poison message, through a running engine."""
    await PersonaStore(redis, keys).put(
        Persona(bot_id="support", display_name="Ava", messages={"unavailable": "Down, sorry."})
    )
    engine = build_engine(
        redis,
        keys,
        ScriptedProvider(replies=Exploding()),
        config=EngineConfig(
            block_ms=20, max_attempts=3, backoff=Backoff(first=0.01, cap=0.05), defer_wait_s=0.01
        ),
    )
    poison, fine = msg("boom", "ann"), [msg("where is my order?", "bob"), msg("refund please", "cy")]
    async with engine:
        for m in (poison, *fine):
            await engine.bus.submit(m)

        async def all_answered() -> bool:
            return len(await replies(redis, keys)) == 3

        await wait_for(all_answered, timeout=30, what="three replies")
    return poison, fine


async def test_a_poison_entry_is_dead_lettered_and_the_others_answered(redis, keys: Keys, dead) -> None:
    poison, fine = dead
    by_user = {r.user_id: r for r in await replies(redis, keys)}
    assert by_user["ann"].text == "Down, sorry." and by_user["ann"].route is Route.UNAVAILABLE
    assert all(by_user[m.user_id].route is not Route.UNAVAILABLE for m in fine)
    (entry,) = await redis.xrange(keys.dead_letters())
    fields = entry[1]
    assert "the model fell over" in fields["error"] and fields["attempts"] == "3"
    assert IncomingMessage.from_json(fields["data"]).message_id == poison.message_id
    assert await redis.xpending(keys.intake(), "engine") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    assert await redis.hlen(keys.intake_failures()) == 0


async def test_dead_letters_cli_lists_retries_and_drops(
    redis, keys: Keys, redis_url: str, dead, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHATBOT_NAMESPACE", keys.namespace)
    runner = CliRunner()

    async def cli(*args: str):  # the CLI runs its own event loop: off this one
        return await asyncio.to_thread(runner.invoke, app, ["dead-letters", *args])

    listed = await cli("list")
    assert listed.exit_code == 0, listed.output
    assert "user ann" in listed.output and "attempts 3" in listed.output
    dead_id = listed.output.split()[0]

    neither = await cli("retry")
    assert neither.exit_code != 0 and "--all" in neither.output and "Traceback" not in neither.output

    retried = await cli("retry", dead_id)
    assert retried.exit_code == 0 and "queued again: 1" in retried.output
    assert await redis.xlen(keys.dead_letters()) == 0
    ((_, last),) = await redis.xrevrange(keys.intake(), count=1)
    assert IncomingMessage.from_json(last["data"]).user_id == "ann"  # on the intake again
    assert not await redis.exists(
        keys.done(dead[0].conversation, dead[0].message_id)
    )  # so it will be answered

    await redis.xadd(
        keys.dead_letters(), {"data": dead[0].to_json(), "entry_id": "1-0", "error": "x", "attempts": 3}
    )
    dropped = await cli("drop", "--all")
    assert dropped.exit_code == 0 and "dropped: 1" in dropped.output
    assert "no dead letters" in (await cli("list")).output
