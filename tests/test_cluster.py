"""The engine, the outbox, tickets and erasure over a real three-primary Redis Cluster.

A cluster refuses any transaction, script or multi-key command whose keys are in more
than one slot (CROSSSLOT), so these tests fail if any commit strays from one slot; they
also check that the keys really are spread over the nodes, and that an entry whose
commit was cut short after its first step is finished once by another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from bots.config import load_settings
from bots.runtime import Runtime
from core.admission import Verdict
from core.bus import DELIVERY_GROUP, ENGINE_GROUP, Bus
from core.cluster import ClusterClient, slot_of
from core.commits import SlotCommits
from core.connection import connect
from core.delivery import Outbox
from core.engine import EngineConfig
from core.history import History
from core.keys import Keys
from core.messages import IncomingMessage, Reply, Route
from core.metrics import DUPLICATES_PREVENTED
from core.persona import Persona, PersonaStore
from core.protocols import GenerationRequest
from core.retry import Backoff
from core.ticket import TicketStatus
from tests.emulators.redis_topologies import LocalCluster
from tests.helpers import wait_for
from tests.scripted_models import ScriptedProvider, ScriptedReplies, build_engine

QUICK = Backoff(first=0.05, cap=0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    servers = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield servers.start()
    finally:
        servers.stop()


@pytest.fixture
async def client(cluster: LocalCluster, keys: Keys) -> AsyncIterator[aioredis.Redis]:
    redis = await connect(cluster.url, Path("var"))
    assert isinstance(redis, ClusterClient)
    await PersonaStore(redis, keys).put(Persona(bot_id="support", display_name="Ava"))
    try:
        yield redis
    finally:
        await redis.aclose()


class PoisonReplies(ScriptedReplies):
    """The scripted reply model, except that a message saying POISON makes it raise."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        if any("POISON" in r.text for r in requests):
            raise RuntimeError("the model fell over")
        return super().generate(requests)


def msg(user: str, text: str) -> IncomingMessage:
    return IncomingMessage("support", "web", user, user, text)


async def replies(redis: aioredis.Redis, keys: Keys) -> list[Reply]:
    return [Reply.from_json(f["data"]) for _, f in await redis.xrange(keys.outbound("web", "support"))]


async def all_keys(redis: aioredis.Redis, keys: Keys) -> list[str]:
    return [k async for k in redis.scan_iter(match=keys.pattern(), count=1000)]


async def test_engine_and_outbox_answer_every_message_once_over_a_cluster(
    client: aioredis.Redis, keys: Keys, cluster: LocalCluster
) -> None:
    engine = build_engine(
        client,
        keys,
        ScriptedProvider(replies=PoisonReplies()),
        config=EngineConfig(block_ms=50, backoff=QUICK, max_attempts=1),
    )
    delivered: list[Reply] = []

    async def deliver(reply: Reply) -> None:
        delivered.append(reply)

    outbox = Outbox(engine.bus, "web", "support", deliver, consumer="web-1", backoff=QUICK)
    users = [f"user{n}" for n in range(4)]
    sent = {u: [msg(u, f"{u} question {i} [track_order:0.9]") for i in range(3)] for u in users}
    sent["user3"][1] = msg("user3", "I want a person [complaint:0.9]")  # opens a ticket
    poison = msg("user4", "POISON")
    stop = asyncio.Event()
    delivering = asyncio.create_task(outbox.run(stop))
    try:
        for i in range(3):  # interleaved, so one batch holds several waves per user
            for u in users:
                assert await engine.bus.submit(sent[u][i], event_id=sent[u][i].message_id)
        assert not await engine.bus.submit(sent["user0"][0], event_id=sent["user0"][0].message_id)
        await engine.bus.submit(poison)
        async with engine:
            await wait_for(lambda: len(delivered) >= 13, timeout=30, what="13 replies delivered")
            await wait_for(lambda: acknowledged(engine.bus, keys), what="every reply acknowledged")
    finally:
        stop.set()
        await asyncio.wait_for(delivering, 10)

    out = await replies(client, keys)
    answered = Counter(r.in_reply_to for r in out)
    expected = [m.message_id for ms in sent.values() for m in ms] + [poison.message_id]
    assert sorted(answered) == sorted(expected) and set(answered.values()) == {1}  # each once
    history = History(client, keys, max_turns=50, ttl_seconds=3600)
    for u in users[:3]:  # in order, each seeing the turns before it
        in_order = [r.text for r in out if r.user_id == u]
        assert [t.split(" (history")[0] for t in in_order] == [
            f"answer to {u} question {i} [track_order:0.9]" for i in range(3)
        ]
        assert [f"(history {2 * i})" in t for i, t in enumerate(in_order)] == [True] * 3
        turns = await history.recent(sent[u][0].conversation, 50)
        assert [t.role for t in turns] == ["user", "bot"] * 3
    user3 = [r.route for r in out if r.user_id == "user3"]
    assert user3 == [Route.GENERATE, Route.ESCALATE, Route.HUMAN]
    tickets = await engine.tickets.list(status=TicketStatus.OPEN)
    assert [t.user_id for t in tickets] == ["user3"]
    (dead,) = await client.xrange(keys.dead_letters())
    assert IncomingMessage.from_json(dead[1]["data"]).text == "POISON"
    assert [r.route for r in out if r.user_id == "user4"] == [Route.UNAVAILABLE]

    # everything was committed through to the end: nothing pending, nothing in flight
    assert await engine.bus.pending_count(keys.intake(), ENGINE_GROUP) == 0
    for u in [*users, "user4"]:
        conv = msg(u, "").conversation
        assert await client.exists(keys.inflight(conv)) == 0
    done = [keys.done(m.conversation, m.message_id) for ms in sent.values() for m in ms]
    assert all(str(v).count("-") == 1 for v in [await client.get(k) for k in done])  # entry ids
    # and the keys really are spread over the three primaries
    stored = await all_keys(client, keys)
    assert len({cluster.port_of_slot(slot_of(k)) for k in stored}) == 3


async def acknowledged(bus: Bus, keys: Keys) -> bool:
    return await bus.pending_count(keys.outbound("web", "support"), DELIVERY_GROUP) == 0


class CutShort(SlotCommits):
    """A worker killed right after an entry's first commit step (its home transaction)."""

    async def _follow_up(self, *args: object, **kwargs: object) -> None:
        raise RedisConnectionError("killed after the home step")


async def test_a_commit_cut_short_after_its_first_step_is_finished_once(
    client: aioredis.Redis, keys: Keys
) -> None:
    w1 = build_engine(client, keys, config=EngineConfig(consumer="w1", block_ms=20))
    w2 = build_engine(client, keys, config=EngineConfig(consumer="w2", block_ms=20))
    w1.guard.slots = CutShort(client, keys)
    first = msg("ann", "where is my order? [track_order:0.9]")
    await w1.bus.submit(first)
    batch = await w1.bus.read_intake("w1", block_ms=20)
    with pytest.raises(RedisConnectionError):
        await w1.handle(batch)
    record = await client.get(keys.done(first.conversation, first.message_id))
    assert record is not None and record.startswith("{")  # committed, follow-ups to do
    assert await replies(client, keys) == []  # the reply is one of them

    before = DUPLICATES_PREVENTED._value.get()
    assert await w2.handle(batch) == []  # not answered again: its commit is finished
    assert DUPLICATES_PREVENTED._value.get() == before + 1
    assert await w2.handle(batch) == []  # and finishing twice changes nothing
    assert [r.in_reply_to for r in await replies(client, keys)] == [first.message_id]
    turns = await History(client, keys).recent(first.conversation, 10)
    assert [t.role for t in turns] == ["user", "bot"]
    assert await client.get(keys.done(first.conversation, first.message_id)) == batch[0][0]
    assert await client.exists(keys.inflight(first.conversation)) == 0
    assert await w2.bus.pending_count(keys.intake(), ENGINE_GROUP) == 0


async def test_tickets_and_history_forget_over_a_cluster(client: aioredis.Redis, keys: Keys) -> None:
    engine = build_engine(client, keys, config=EngineConfig(block_ms=20))
    ask = msg("bo", "get me a person [complaint:0.9]")
    await engine.bus.submit(ask)
    await engine.handle(await engine.bus.read_intake("e", block_ms=20))
    (ticket,) = await engine.tickets.list(status=TicketStatus.OPEN)
    await engine.tickets.reply(ticket.id, "agent", "Hello, I am here.")  # claims it first
    assert (await engine.tickets.get(ticket.id)).status is TicketStatus.CLAIMED
    await engine.tickets.resolve(ticket.id, "agent")
    assert await client.exists(keys.handoff(ask.conversation)) == 0  # the bot has it back
    turns = await History(client, keys).recent(ask.conversation, 10)
    assert [t.role for t in turns] == ["user", "bot", "agent"]
    assert [r.text for r in await replies(client, keys)][-1] == "Hello, I am here."
    assert await client.hlen(keys.ticket_followups()) == 0  # every follow-up applied

    removed = await engine.bus.forget_user("web", "bo")
    assert removed == 3  # the message and two replies
    assert await History(client, keys).forget_user("web", "bo") >= 4
    tag = "{" + Keys.user_tag("web", "bo") + "}"
    assert [k for k in await all_keys(client, keys) if tag in k] == []
    assert await client.exists(keys.ticket(ticket.id), keys.ticket_audit(ticket.id)) == 0
    assert await engine.tickets.list() == []


async def test_the_runtime_seeds_personas_and_limits_rates_over_a_cluster(
    cluster: LocalCluster, keys: Keys, tmp_path: Path
) -> None:
    settings = load_settings(
        redis_url=cluster.url,
        data_dir=tmp_path,
        CHATBOT_NAMESPACE=keys.namespace,
        CHATBOT_INTAKE_RATE_LIMIT="2/minute",
    )
    async with Runtime(settings) as rt:  # what `chatbot run` builds, on the cluster
        assert (await rt.personas.get("support")).bot_id == "support"  # seeded
        verdicts = [await rt.bus.admit(msg("cy", str(n))) for n in range(3)]
        assert verdicts == [Verdict.ADMIT, Verdict.ADMIT, Verdict.SLOW_DOWN]
        await rt.bus.forget_user("web", "cy")  # the user's window goes with the rest
        assert await rt.bus.admit(msg("cy", "again")) is Verdict.ADMIT
        await rt.redis.delete(*await all_keys(rt.redis, keys))


async def test_replies_are_forwarded_between_web_processes_over_a_cluster(
    client: aioredis.Redis, keys: Keys, cluster: LocalCluster
) -> None:
    """Pub/sub works in a Cluster, and ``forward_reply`` counts the subscriber, which
    tells a web process whether the one holding the request is still there."""
    other = await connect(cluster.url, Path("var"))
    got: list[Reply] = []

    async def on_reply(reply: Reply) -> None:
        got.append(reply)

    listening = asyncio.create_task(Bus(other, keys).receive_forwarded("web-2", on_reply))
    reply = Reply.to(msg("di", "hi"), "hello", Route.GENERATE)
    try:
        bus = Bus(client, keys)
        assert not await bus.forward_reply("web-3", reply)  # nobody listens there
        await wait_for(lambda: bus.forward_reply("web-2", reply), what="the other process to listen")
        await wait_for(lambda: len(got) >= 1, what="the forwarded reply")
        assert got[0] == reply
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await other.aclose()


async def test_leases_of_users_in_different_slots_are_renewed_and_released(
    client: aioredis.Redis, keys: Keys
) -> None:
    engine = build_engine(client, keys, config=EngineConfig(lease_ms=60_000))
    for user in ("user0", "user1"):  # two users on two different primaries
        await engine.bus.submit(msg(user, "hi"))
    batch = await engine.bus.read_intake("w", block_ms=20)
    admission = await engine.guard.admit(batch)
    leases = list(admission.leases.values())
    assert len({slot_of(k) for k in leases}) == 2
    async with engine.guard.holding(admission):
        for lease in leases:
            await client.pexpire(lease, 5_000)
        await engine.guard.renew(admission)  # what the holder does every third of the lease time
        assert [await client.pttl(k) > 5_000 for k in leases] == [True, True]
    assert await client.exists(*leases) == 0  # released on the way out
