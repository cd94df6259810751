"""The hand-off end to end in a real headless Chromium (Debian's package, driven by
Playwright): a customer asks the web chat for a person, an agent signs in and sees the
ticket appear in the queue, claims it and replies; the reply appears on the customer's
page without a reload; the agent resolves and the bot answers the next message.

`make test` installs Chromium when it is missing. With DESK_SCREENSHOTS=docs/img the
test also refreshes the screenshots the docs show.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bots.desk.accounts import Role
from core.history import Turn
from core.messages import Attachment, ConversationKey
from core.persona import Persona, QuickReplies, QuickReplyOption
from tests.desk_stack import PASSWORD, Stack, running_stack, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 30_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run `make test` (it installs Debian's chromium package)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def stack(redis, keys) -> AsyncIterator[Stack]:
    async with running_stack(redis, keys, cookie_secure=True) as s:  # as `chatbot run` sets them
        yield s


async def sign_in(page: Page, url: str, name: str) -> None:
    await page.goto(f"{url}/desk/login")
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    await page.click("#signin")
    await expect(page.locator("#nav .who")).to_contain_text(name, timeout=WAIT_MS)


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def shot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    await page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("DESK_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)


async def test_customer_to_agent_and_back_in_a_real_browser(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    await stack.account("agnes", Role.AGENT)
    async with serving(stack.app) as url:
        agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
        customer_ctx = await browser.new_context(viewport={"width": 480, "height": 760})
        agent, customer = await agent_ctx.new_page(), await customer_ctx.new_page()
        errors: list[str] = []
        for page in (agent, customer):
            page.on("pageerror", lambda exc: errors.append(str(exc)))

        # The agent watches the (empty) queue before anything happens.
        await sign_in(agent, url, "agnes")
        await expect(agent.locator("#live")).to_contain_text("live", timeout=WAIT_MS)
        await expect(agent.locator("#tickets tr")).to_have_count(0)

        # A customer asks for a person; the bot hands over.
        await customer.goto(url + "/")
        await expect(customer.locator("#title")).to_have_text("Ava", timeout=WAIT_MS)
        await say(
            customer, "[contact_human_agent:0.95] I want to talk to a person <img src=x onerror=alert(1)>"
        )
        handoff = (await stack.personas.get("support")).messages.handoff
        await expect(customer.locator(".msg.bot").last).to_contain_text(handoff, timeout=WAIT_MS)

        # The ticket appears in the agent's queue without a reload.
        row = agent.locator("#tickets tr[data-ticket]")
        await expect(row).to_have_count(1, timeout=WAIT_MS)
        await expect(row.locator(".badge")).to_have_text("open")
        await expect(agent.locator("#statuses button[data-status=open] .count")).to_have_text("1")
        await shot(agent, tmp_path, "desk-queue.png")

        # Claim and reply.
        await row.click()
        await expect(agent.locator("#title .badge")).to_have_text("open", timeout=WAIT_MS)
        customer_turn = agent.locator(".turn.user").last
        await expect(customer_turn).to_contain_text("<img src=x onerror=alert(1)>")  # shown as text
        assert await agent.locator(".turn.user img").count() == 0
        await agent.click("#claim")
        await expect(agent.locator("#title .badge")).to_have_text("claimed", timeout=WAIT_MS)
        await agent.fill("#text", "Hi, this is Agnes from support. Let me check that for you.")
        await agent.click("#send")
        await expect(agent.locator(".turn.agent").last).to_contain_text("Agnes from support", timeout=WAIT_MS)

        # The reply reaches the customer's open page, marked as a person, no reload.
        reply = customer.locator(".msg.agent").last
        await expect(reply).to_contain_text("Let me check that for you.", timeout=WAIT_MS)
        await expect(reply.locator(".who")).to_contain_text("agnes")
        await say(customer, "Thanks, my order number is 12345")
        await expect(agent.locator(".turn.user").last).to_contain_text("12345", timeout=WAIT_MS)  # live
        await shot(customer, tmp_path, "webchat-agent-reply.png")
        await shot(agent, tmp_path, "desk-ticket.png")

        # After a reload the customer still sees the whole conversation.
        await customer.reload()
        await expect(customer.locator(".msg.agent")).to_contain_text(["Let me check"], timeout=WAIT_MS)

        # Resolve: the bot answers the next message again.
        await agent.click("#resolve")
        await expect(agent.locator("#title .badge")).to_have_text("resolved", timeout=WAIT_MS)
        await say(customer, "where is my order?")
        await expect(customer.locator(".msg.bot").last).to_contain_text(
            "answer to where is my order?", timeout=WAIT_MS
        )
        assert not errors, errors
        await agent_ctx.close()
        await customer_ctx.close()


async def test_admin_edits_a_persona_in_the_browser(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    await stack.account("root", Role.ADMIN)
    async with serving(stack.app) as url:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        await sign_in(page, url, "root")
        await page.goto(f"{url}/desk/admin/personas")
        name = page.locator("#f-display_name")
        await expect(name).to_have_value("Ava", timeout=WAIT_MS)
        await name.fill("<b>Ava</b> & co")
        await page.fill("#sample", "where is my order?")
        await page.click("#try")
        await expect(page.locator("#result")).to_contain_text("generate", timeout=WAIT_MS)
        await page.fill("#f-generation-temperature", "9")
        await page.click("#save")
        await expect(page.locator("#error")).to_contain_text("generation.temperature", timeout=WAIT_MS)
        await page.fill("#f-generation-temperature", "0.6")
        await page.click("#save")
        await expect(page.locator("#saved")).to_contain_text("Saved as version", timeout=WAIT_MS)
        await expect(page.locator("#f-display_name")).to_have_value("<b>Ava</b> & co")
        await shot(page, tmp_path, "desk-personas.png")
        await ctx.close()
    persona = await stack.personas.get("support")
    assert persona.display_name == "<b>Ava</b> & co" and persona.generation.temperature == 0.6


async def test_quick_replies_the_person_button_and_attachments_in_a_real_browser(
    stack: Stack, browser: Browser
) -> None:
    """The web chat shows the greeting's buttons and sends a click as the customer's
    choice; its "Talk to a person" button escalates at once; the desk's ticket page lists
    what a Telegram customer attached, with the platform's link."""
    track = QuickReplyOption(label="Track my order", text="Where is my order?")
    persona = Persona(bot_id="support", display_name="Ava", quick_replies=QuickReplies(greeting=[track]))
    await stack.personas.put(persona)
    await stack.account("agnes", Role.AGENT)
    photo = Attachment(kind="photo", size=64000, file_id="AgAD-large", url="https://cdn.example/p.png")
    conv = ConversationKey("support", "telegram", "42", "42")
    await stack.history.append_turns(conv, [Turn("user", "", attachments=(photo,), display_name="Ada")])
    ticket = await stack.open_ticket("42", platform="telegram", name="Ada")
    async with serving(stack.app) as url:
        ctx = await browser.new_context(viewport={"width": 1024, "height": 800})
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(url + "/")
        button = page.locator(".msg.bot .choice")
        await expect(button).to_have_text(["Track my order"], timeout=WAIT_MS)
        await button.click()
        await expect(page.locator(".msg.me").last).to_have_text("Track my order", timeout=WAIT_MS)
        await expect(page.locator(".msg.bot").last).to_contain_text(
            "answer to Where is my order?", timeout=WAIT_MS
        )
        assert await page.locator(".choice").count() == 0  # the buttons went with the click
        await page.click("#human")
        await expect(page.locator(".msg.bot").last).to_contain_text(persona.messages.handoff, timeout=WAIT_MS)

        await sign_in(page, url, "agnes")
        await page.goto(f"{url}/desk/tickets/{ticket.id}")
        attached = page.locator(".turn.user .attachment")
        await expect(attached).to_contain_text("photo, 62.5 KB, file id AgAD-large", timeout=WAIT_MS)
        await expect(attached.locator("a")).to_have_attribute("href", "https://cdn.example/p.png")
        assert not errors, errors
        await ctx.close()
