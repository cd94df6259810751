"""The outbox: per-chat order, retries after 429 and outages, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from core.bus import Bus
from core.delivery import Outbox
from core.errors import AdapterAuthError, DeliveryError, PermanentDeliveryError, RateLimited
from core.messages import Reply, Route
from core.retry import Backoff
from tests.helpers import wait_for

FAST = Backoff(first=0.01, cap=0.05)


def reply(chat: str, text: str) -> Reply:
    return Reply("support", "slack", chat, "U", text, Route.GENERATE)


async def run_outbox(outbox: Outbox):
    stop = asyncio.Event()
    return stop, asyncio.create_task(outbox.run(stop))


async def test_rate_limit_then_success_loses_nothing_and_keeps_order(redis, keys) -> None:
    bus = Bus(redis, keys)
    sent: list[str] = []
    failures = {"a1": [RateLimited(0.05)], "a2": [DeliveryError("connection reset"), OSError("down")]}

    async def deliver(r: Reply) -> None:
        pending = failures.get(r.text)
        if pending:
            raise pending.pop(0)
        sent.append(r.text)

    for text in ("a1", "a2", "a3"):
        await bus.publish_reply(reply("A", text))
    outbox = Outbox(bus, "slack", "support", deliver, backoff=FAST)
    stop, task = await run_outbox(outbox)
    await wait_for(lambda: len(sent) == 3, what="three deliveries")
    stop.set()
    await task
    assert sent == ["a1", "a2", "a3"]
    assert outbox.retries == 3
    assert await bus.pending_count(keys.outbound("slack", "support"), "delivery") == 0


async def test_a_stuck_chat_does_not_hold_up_others(redis, keys) -> None:
    bus = Bus(redis, keys)
    sent: list[str] = []
    release = asyncio.Event()

    async def deliver(r: Reply) -> None:
        if r.chat_id == "slow" and not release.is_set():
            raise RateLimited(0.02)
        sent.append(r.text)

    await bus.publish_reply(reply("slow", "s1"))
    await bus.publish_reply(reply("fast", "f1"))
    await bus.publish_reply(reply("fast", "f2"))
    stop, task = await run_outbox(Outbox(bus, "slack", "support", deliver, backoff=FAST))
    await wait_for(lambda: sent == ["f1", "f2"], what="other chat delivered")
    release.set()
    await wait_for(lambda: "s1" in sent, what="slow chat delivered after the limit")
    stop.set()
    await task


async def test_auth_error_stops_the_outbox_and_keeps_the_reply(redis, keys) -> None:
    bus = Bus(redis, keys)

    async def deliver(r: Reply) -> None:
        raise AdapterAuthError("SLACK_BOT_TOKEN was rejected")

    await bus.publish_reply(reply("A", "kept"))
    _stop, task = await run_outbox(Outbox(bus, "slack", "support", deliver, backoff=FAST))
    with pytest.raises(AdapterAuthError, match="SLACK_BOT_TOKEN"):
        await asyncio.wait_for(task, timeout=5)
    assert await bus.pending_count(keys.outbound("slack", "support"), "delivery") == 1


async def test_a_permanent_refusal_drops_that_reply_and_the_next_is_delivered(
    redis, keys, caplog: pytest.LogCaptureFixture
) -> None:
    bus = Bus(redis, keys)
    sent: list[str] = []

    async def deliver(r: Reply) -> None:
        if r.text == "refused":
            raise PermanentDeliveryError("Forbidden: bot was blocked by the user")
        sent.append(r.text)

    for text in ("before", "refused", "after"):
        await bus.publish_reply(reply("A", text))
    outbox = Outbox(bus, "slack", "support", deliver, backoff=FAST)
    stop, task = await run_outbox(outbox)
    await wait_for(lambda: outbox.delivered + outbox.dropped == 3, what="all three settled")
    stop.set()
    await task
    assert sent == ["before", "after"]
    assert (outbox.delivered, outbox.dropped, outbox.retries) == (2, 1, 0)  # dropped at once
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1 and "blocked by the user" in drops[0]
    assert await bus.pending_count(keys.outbound("slack", "support"), "delivery") == 0  # acknowledged


async def test_unacked_reply_is_resent_after_restart(redis, keys) -> None:
    bus = Bus(redis, keys)
    await bus.publish_reply(reply("A", "survives"))
    await bus.read_outbound("slack", "support", "slack-1", block_ms=10)  # read, then the process "dies"
    sent: list[str] = []

    async def deliver(r: Reply) -> None:
        sent.append(r.text)

    stop, task = await run_outbox(
        Outbox(Bus(redis, keys), "slack", "support", deliver, consumer="slack-1", backoff=FAST)
    )
    await wait_for(lambda: sent == ["survives"], what="redelivery")
    stop.set()
    await task
