"""Events pushed to a customer's open pages: bounded, per customer, forgotten on close."""

from __future__ import annotations

import json
from typing import Any

from adapters.push import PushChannels


async def next_event(stream: Any) -> dict[str, str]:
    return dict(await anext(stream))


async def test_a_page_gets_ready_then_its_customers_events_only() -> None:
    pages = PushChannels()
    stream = pages.stream("alice", "reply").body_iterator
    pages.publish("alice", {"text": "for alice"})
    pages.publish("bob", {"text": "for bob"})  # nobody listens for bob: dropped
    assert await next_event(stream) == {"event": "ready", "data": "{}"}
    event = await next_event(stream)
    assert event["event"] == "reply" and json.loads(event["data"]) == {"text": "for alice"}
    assert pages.listening("alice") == 1 and pages.listening("bob") == 0
    await stream.aclose()  # the page closed
    assert pages.listening("alice") == 0


async def test_a_slow_page_loses_its_oldest_events_not_the_newest() -> None:
    pages = PushChannels(queue_size=3)
    stream = pages.stream("alice", "reply").body_iterator
    for n in range(5):
        pages.publish("alice", {"n": n})
    await next_event(stream)  # ready
    kept = [json.loads((await next_event(stream))["data"])["n"] for _ in range(3)]
    assert kept == [2, 3, 4]
    await stream.aclose()


async def test_every_open_page_of_a_customer_gets_the_event() -> None:
    pages = PushChannels()
    first = pages.stream("alice", "reply").body_iterator
    second = pages.stream("alice", "reply").body_iterator
    pages.publish("alice", {"text": "hi"})
    for stream in (first, second):
        await next_event(stream)  # ready
        assert json.loads((await next_event(stream))["data"]) == {"text": "hi"}
    await first.aclose()
    assert pages.listening("alice") == 1
    await second.aclose()
    assert pages.listening("alice") == 0
