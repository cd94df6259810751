"""Several bots in one `chatbot run`: each on its own tokens with its own persona (the
platforms are emulators spoken to by their real SDKs, the models are the tiny real ones),
switched on and off while the process runs, `chatbot bots`, and `chatbot send`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bots.cli import app
from bots.config import load_settings
from bots.fleet import Fleet
from bots.roles import Role
from bots.serve import serve
from core.history import History, Turn
from core.keys import Keys
from core.messages import ConversationKey
from core.persona import Persona, PersonaStore
from tests.emulators.discord import DiscordEmulator
from tests.emulators.slack import SlackEmulator, event_body, signed_event_request
from tests.emulators.telegram import TelegramEmulator
from tests.helpers import wait_for
from tests.test_adapter_slack import dm as slack_dm
from tests.test_adapter_telegram import OTHER_TOKEN, TOKEN
from tests.test_end_to_end import env, models_dir  # noqa: F401  (fixtures: tiny real models)
from tests.test_roles import free_port

SUPPORT_SAYS = "Ava from support here, please say that again"
SHOP_SAYS = "Sam from the shop here, please say that again"


def persona(bot_id: str, name: str, says: str, **extra: Any) -> Persona:
    """Every message is 'unsure' (threshold 1.0), so each bot answers with its own line."""
    return Persona.model_validate(
        {
            "bot_id": bot_id,
            "display_name": name,
            "routing": {"confidence_threshold": 1.0, "escalate_after_low_confidence": 100},
            "messages": {"rephrase": says},
            **extra,
        }
    )


SUPPORT = persona("support", "Ava", SUPPORT_SAYS, platforms=["web", "console", "telegram", "slack"])
SHOP = persona(
    "shop",
    "Sam",
    SHOP_SAYS,
    platforms=["web", "telegram", "slack", "discord"],
    credentials={
        "telegram": {"token_env": "SHOP_TELEGRAM_TOKEN"},
        "slack": {"bot_token_env": "SHOP_SLACK_BOT_TOKEN", "signing_secret_env": "SHOP_SLACK_SECRET"},
        "discord": {"token_env": "SHOP_DISCORD_TOKEN"},
    },
)


@contextlib.asynccontextmanager
async def serving(
    monkeypatch: pytest.MonkeyPatch, redis: Any, keys: Keys, **variables: str
) -> AsyncIterator[str]:
    """`chatbot run` in this process with both bots' personas live; yields its URL."""
    for name, value in {"CHATBOT_RECONCILE_INTERVAL": "0.2", **variables}.items():
        monkeypatch.setenv(name, value)
    personas = PersonaStore(redis, keys)
    await personas.put(SUPPORT)
    await personas.put(SHOP)
    port, ready = free_port(), asyncio.Event()
    task = asyncio.create_task(serve(load_settings(CHATBOT_PORT=port), on_ready=lambda _: ready.set()))
    try:
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(ready.wait())], timeout=120, return_when="FIRST_COMPLETED"
        )
        if task in done:
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def bots_health(client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    bots: dict[str, dict[str, str]] = (await client.get("/healthz")).json()["bots"]
    return bots


async def cli(*args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_two_bots_answer_each_on_its_own_tokens_with_its_own_persona(
    env: Keys,  # noqa: F811
    redis: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with TelegramEmulator() as tg, SlackEmulator() as slack:
        discord = await DiscordEmulator().start()
        try:
            support_tg, shop_tg = tg.add_bot(TOKEN, "support_bot"), tg.add_bot(OTHER_TOKEN, "shop_bot")
            slack.add_app("xoxb-shop", "USHOP", "BSHOP")
            variables = {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "SHOP_TELEGRAM_TOKEN": OTHER_TOKEN,
                "TELEGRAM_API_BASE_URL": tg.base_url,
                "SLACK_BOT_TOKEN": slack.token,
                "SLACK_SIGNING_SECRET": "support-secret",
                "SHOP_SLACK_BOT_TOKEN": "xoxb-shop",
                "SHOP_SLACK_SECRET": "shop-secret",
                "SLACK_API_URL": slack.url,
                "SHOP_DISCORD_TOKEN": discord.token,
                "DISCORD_API_BASE_URL": discord.api_base_url,
                "DISCORD_GATEWAY_URL": discord.gateway_url,
            }
            async with serving(monkeypatch, redis, env, **variables) as url:
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    health = (await client.get("/healthz")).json()
                    on = "running"
                    assert health["bots"] == {
                        "shop": {"web": on, "telegram": on, "slack": on, "discord": on},
                        "support": {"web": on, "telegram": on, "slack": on},
                    }
                    assert health["adapters"] == health["bots"]["support"]  # the default bot's, as before

                    # Slack: each app's Request URL, each checked with that app's signing secret
                    for path, secret in (
                        ("/slack/events", "support-secret"),
                        ("/slack/shop/events", "shop-secret"),
                    ):
                        raw, headers = signed_event_request(event_body(slack_dm("hello")), secret)
                        assert (await client.post(path, content=raw, headers=headers)).status_code == 200
                    raw, headers = signed_event_request(event_body(slack_dm("hello")), "support-secret")
                    assert (
                        await client.post("/slack/shop/events", content=raw, headers=headers)
                    ).status_code == 401
                    raw, headers = signed_event_request(event_body(slack_dm("hello")), "x")
                    missing = await client.post("/slack/ghost/events", content=raw, headers=headers)
                    assert missing.status_code == 404 and "unknown bot 'ghost'" in missing.json()["error"]

                    # the web chat: each bot at its own path, the default bot also at /
                    assert "<textarea" in (await client.get("/b/shop/")).text
                    slashless = await client.get("/b/shop", follow_redirects=False)
                    assert slashless.status_code == 307 and slashless.headers["location"].endswith("/b/shop/")
                    assert (await client.get("/b/shop/api/bot")).json()["display_name"] == "Sam"
                    shop_web = await client.post("/b/shop/api/chat", json={"text": "hello"})
                    support_web = await client.post("/api/chat", json={"text": "hello"})
                    assert shop_web.json()["text"] == SHOP_SAYS and support_web.json()["text"] == SUPPORT_SAYS
                    assert (await client.post("/b/support/api/chat", json={"text": "hi"})).json()[
                        "text"
                    ] == SUPPORT_SAYS
                    ghost = await client.post("/b/ghost/api/chat", json={"text": "hello"})
                    assert ghost.status_code == 404 and ghost.json() == {"error": "unknown bot 'ghost'"}

                support_tg.dm("hello")
                shop_tg.dm("hello")
                message_id = await discord.message_create("hello")
                await wait_for(
                    lambda: (
                        bool(support_tg.sent and shop_tg.sent and len(slack.posted) == 2)
                        and bool(discord.replies_to(message_id))
                    ),
                    timeout=90,
                    what="each bot's replies",
                )
                assert support_tg.texts() == [SUPPORT_SAYS] and shop_tg.texts() == [SHOP_SAYS]
                assert [p.text for p in slack.posted_by(slack.token)] == [SUPPORT_SAYS]
                assert [p.text for p in slack.posted_by("xoxb-shop")] == [SHOP_SAYS]
                assert discord.replies_to(message_id)[0].content == SHOP_SAYS
        finally:
            await discord.stop()


async def test_a_platform_switched_off_while_running_stops_only_that_adapter(
    env: Keys,  # noqa: F811
    redis: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with TelegramEmulator() as tg:
        support_tg, shop_tg = tg.add_bot(TOKEN, "support_bot"), tg.add_bot(OTHER_TOKEN, "shop_bot")
        variables = {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "SHOP_TELEGRAM_TOKEN": OTHER_TOKEN,
            "TELEGRAM_API_BASE_URL": tg.base_url,
        }
        async with (
            serving(monkeypatch, redis, env, **variables) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as client,
        ):
            assert (await bots_health(client))["shop"] == {"web": "running", "telegram": "running"}
            result = await cli("bots", "disable", "shop", "--platform", "telegram")
            assert result.exit_code == 0 and "shop on telegram disabled" in result.output, result.output

            async def shop_platforms() -> set[str]:
                return set((await bots_health(client)).get("shop", {}))

            await wait_for(lambda: _equals(shop_platforms(), {"web"}), what="shop's Telegram adapter to stop")
            shop_tg.dm("anyone there?")
            support_tg.dm("hello")
            await wait_for(lambda: bool(support_tg.sent), timeout=60, what="the support bot's reply")
            assert support_tg.texts() == [SUPPORT_SAYS]
            assert shop_tg.sent == [] and len(shop_tg.pending) == 1  # nobody read shop's update
            # the shop's web chat still answers; the whole bot off, it says so at once
            assert (await client.post("/b/shop/api/chat", json={"text": "hi"})).json()["text"] == SHOP_SAYS
            assert (await cli("bots", "disable", "shop")).exit_code == 0
            await wait_for(lambda: _equals(shop_platforms(), set()), what="the shop bot to stop")
            off = await client.post("/b/shop/api/chat", json={"text": "hi"})
            assert off.status_code == 404 and "bot 'shop' is disabled" in off.json()["error"]
            no_web = await client.post("/b/support/api/chat", json={"text": "hi"})
            assert no_web.status_code == 200  # the other bot is untouched

            assert (await cli("bots", "enable", "shop")).exit_code == 0
            assert (await cli("bots", "enable", "shop", "--platform", "telegram")).exit_code == 0
            await wait_for(lambda: bool(shop_tg.sent), timeout=60, what="the shop bot back on Telegram")
            assert shop_tg.texts() == [SHOP_SAYS]  # the update sent while it was off, answered once


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_send_reaches_a_known_customer_once_and_is_stored_in_history(
    env: Keys,  # noqa: F811
    redis: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with TelegramEmulator() as tg:
        bot = tg.add_bot(TOKEN, "support_bot")
        variables = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": tg.base_url}
        async with serving(monkeypatch, redis, env, **variables):
            bot.dm("where is my order?")
            await wait_for(lambda: len(bot.sent) == 1, timeout=60, what="the first reply")
            send = ("send", "--platform", "telegram", "--user", "42", "--id", "order-7")
            result = await cli(*send, "Your order has shipped.")
            assert result.exit_code == 0 and "delivered to telegram user 42" in result.output, result.output
            assert bot.texts() == [SUPPORT_SAYS, "Your order has shipped."]
            again = await cli(*send, "Your order has shipped.")
            assert again.exit_code == 0 and "already sent" in again.output and len(bot.sent) == 2

            turns = await History(redis, env).recent(ConversationKey("support", "telegram", "42", "42"))
            assert [(t.role, t.route, t.text) for t in turns[-1:]] == [
                ("bot", "proactive", "Your order has shipped.")
            ]

            shop_conv = ConversationKey("shop", "telegram", "42", "42")
            stranger = await cli("send", "--platform", "telegram", "--user", "99", "Hello there")
            assert stranger.exit_code == 2 and "no conversation with telegram user '99'" in stranger.output
            # the shop bot talked to 42 once, but no process runs its Telegram adapter now
            await History(redis, env).append_turns(shop_conv, [Turn(role="user", text="hi")])
            off = await cli("send", "--bot", "shop", "--platform", "telegram", "--user", "42", "Hi")
            assert (
                off.exit_code == 2
                and "no running process delivers telegram messages of bot 'shop'" in off.output
            )

            bot.blocked_by.add(42)
            blocked = await cli("send", "--platform", "telegram", "--user", "42", "One more update")
            assert blocked.exit_code == 2 and "the user blocked the bot" in blocked.output, blocked.output
            assert "Traceback" not in blocked.output and len(bot.sent) == 2


def test_bots_list_show_enable_disable(env: Keys, redis: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("SHOP_TELEGRAM_TOKEN", "654321:SECRET-value")
    asyncio.run(_put(env, SUPPORT, SHOP))
    listed = CliRunner().invoke(app, ["bots", "list"])
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.output.splitlines() if line.strip()}
    assert "enabled" in rows["shop"] and "telegram not running" in rows["shop"]
    assert "slack no credentials" in rows["shop"] and "web not running" in rows["support"]

    shown = CliRunner().invoke(app, ["bots", "show", "shop"])
    assert shown.exit_code == 0 and "SHOP_TELEGRAM_TOKEN (set)" in shown.output
    assert "SHOP_SLACK_SECRET (unset)" in shown.output and "/b/shop/" in shown.output
    assert "SECRET-value" not in shown.output  # names and set/unset only, never a value

    assert "shop disabled" in CliRunner().invoke(app, ["bots", "disable", "shop"]).output
    assert "was already disabled" in CliRunner().invoke(app, ["bots", "disable", "shop"]).output
    assert "disabled" in CliRunner().invoke(app, ["bots", "list"]).output.split("shop", 1)[1].splitlines()[0]
    for args, says in (
        (["bots", "enable", "ghost"], "no persona for bot 'ghost'"),
        (["bots", "enable", "shop", "--platform", "irc"], "unknown platform 'irc'"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output


def test_the_console_honours_the_personas_platforms(env: Keys, redis: Any) -> None:  # noqa: F811
    asyncio.run(_put(env, SUPPORT, SHOP))
    result = CliRunner().invoke(app, ["chat", "--bot", "shop"], input="hi\n")
    assert result.exit_code == 2 and "bot 'shop' does not serve the console" in result.output


async def _put(keys: Keys, *personas: Persona) -> None:
    from core.connection import connect

    settings = load_settings()
    client = await connect(settings.redis_url, settings.data_dir)
    try:
        for p in personas:
            await PersonaStore(client, keys).put(p)
    finally:
        await client.aclose()


async def test_the_fleet_stops_even_when_its_loop_loses_the_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancellation swallowed inside the loop's work (as a library's timeout can) must
    not keep the loop, and so the shutdown waiting for it, running forever."""
    runtime: Any = SimpleNamespace(settings=SimpleNamespace(reconcile_interval=0.0))
    fleet = Fleet(runtime, Role.parse("worker"))
    inside, rounds = asyncio.Event(), 0

    async def reconcile() -> None:
        nonlocal rounds
        rounds += 1
        inside.set()
        with contextlib.suppress(asyncio.CancelledError):  # lost, as it was in a real run
            await asyncio.sleep(0.05)

    monkeypatch.setattr(fleet, "reconcile", reconcile)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(fleet)
        inside.clear()
        await inside.wait()  # the loop is inside its work: the cancellation lands there
    # (had the exit hung, pytest's timeout would fail the test)
    before = rounds
    await asyncio.sleep(0.1)
    assert fleet._task is not None and fleet._task.done()
    assert rounds == before  # nothing runs on after the shutdown
