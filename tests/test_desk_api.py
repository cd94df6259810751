"""The desk's JSON API end to end over real Redis: sign-in, roles, CSRF, the ticket
actions, personas, accounts, the audit log and the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.routing import Mount, Route

from bots.desk.accounts import Role
from bots.desk.auth import CSRF_COOKIE, SESSION_COOKIE
from bots.desk.openapi import PATHS
from bots.personas import dump_persona, parse_persona
from core.errors import ConfigError
from core.persona import Persona
from tests.desk_stack import PASSWORD, Stack, running_stack


@pytest.fixture
async def stack(redis, keys) -> AsyncIterator[Stack]:
    async with running_stack(redis, keys) as s:
        yield s


@contextlib.asynccontextmanager
async def signed_in(stack: Stack, name: str, role: Role = Role.AGENT) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as a new account, sending its CSRF token like the pages do."""
    await stack.account(name, role)
    async with stack.client() as client:
        r = await client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf"]
        yield client


GUARDED = [
    ("POST", "/api/auth/logout"),
    ("GET", "/api/auth/me"),
    ("GET", "/api/desk/tickets"),
    ("GET", "/api/desk/tickets/abc"),
    ("POST", "/api/desk/tickets/abc/claim"),
    ("POST", "/api/desk/tickets/abc/release"),
    ("POST", "/api/desk/tickets/abc/reply"),
    ("POST", "/api/desk/tickets/abc/resolve"),
    ("GET", "/api/desk/events"),
    ("GET", "/api/admin/personas"),
    ("GET", "/api/admin/personas/support"),
    ("PUT", "/api/admin/personas/support"),
    ("POST", "/api/admin/personas/support/preview"),
    ("GET", "/api/admin/intents/support"),
    ("GET", "/api/admin/accounts"),
    ("POST", "/api/admin/accounts"),
    ("POST", "/api/admin/accounts/x/disable"),
    ("POST", "/api/admin/accounts/x/enable"),
    ("POST", "/api/admin/accounts/x/password"),
    ("GET", "/api/admin/audit"),
]
ADMIN_ONLY = [(m, p) for m, p in GUARDED if p.startswith("/api/admin/")]


async def test_anonymous_callers_get_401_everywhere(stack: Stack) -> None:
    async with stack.client() as client:
        for method, path in GUARDED:
            r = await client.request(method, path, json={})
            assert r.status_code == 401, (method, path)
            assert r.headers["cache-control"] == "no-store" and r.json()["error"]
        forged = {"Authorization": "Bearer cbt_not-a-token"}
        assert (await client.get("/api/desk/tickets", headers=forged)).status_code == 401


async def test_agents_get_403_on_admin_endpoints(stack: Stack) -> None:
    async with signed_in(stack, "agnes") as agent:
        for method, path in ADMIN_ONLY:
            r = await agent.request(method, path, json={"persona": {}})
            assert r.status_code == 403, (method, path)
        persona = (await stack.personas.get("support")).model_dump(mode="json")
        persona["display_name"] = "Hacked"
        assert (await agent.put("/api/admin/personas/support", json={"persona": persona})).status_code == 403
    assert (await stack.personas.get("support")).display_name == "Ava"


async def test_login_sets_strict_http_only_cookies_and_logout_ends_the_session(stack: Stack) -> None:
    await stack.account("agnes")
    async with stack.client() as client:
        wrong = await client.post("/api/auth/login", json={"username": "agnes", "password": "nope nope nope"})
        assert wrong.status_code == 401
        r = await client.post("/api/auth/login", json={"username": "agnes", "password": PASSWORD})
        assert r.status_code == 200 and r.json()["role"] == "agent" and "hash" not in r.text
        cookies = r.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
        assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
        csrf_cookie = next(c for c in cookies if c.startswith(CSRF_COOKIE + "="))
        assert "HttpOnly" not in csrf_cookie  # the page reads it for the header
        me = await client.get("/api/auth/me")
        assert me.json()["username"] == "agnes" and me.headers["cache-control"] == "no-store"
        out = await client.post("/api/auth/logout", headers={"X-CSRF-Token": r.json()["csrf"]})
        assert out.status_code == 200
        client.cookies.set(SESSION_COOKIE, session.split(";")[0].split("=", 1)[1])  # replaying it
        assert (await client.get("/api/auth/me")).status_code == 401


async def test_secure_cookie_flag_follows_the_setting(redis, keys) -> None:
    async with running_stack(redis, keys) as stack:
        object.__setattr__(stack.desk.config, "cookie_secure", True)
        routes = stack.desk.routes()
        await stack.account("agnes")
        app = type(stack.app)(routes=routes)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://d") as c:
            r = await c.post("/api/auth/login", json={"username": "agnes", "password": PASSWORD})
        assert all("Secure" in c for c in r.headers.get_list("set-cookie"))


async def test_disabled_accounts_cannot_sign_in_and_lose_their_sessions(stack: Stack) -> None:
    async with signed_in(stack, "root", Role.ADMIN) as admin, signed_in(stack, "agnes") as agent:
        assert (await agent.get("/api/desk/tickets")).status_code == 200
        r = await admin.post("/api/admin/accounts/agnes/disable")
        assert r.status_code == 200 and r.json()["account"]["disabled"] is True
        assert (await agent.get("/api/desk/tickets")).status_code == 401
        again = await agent.post("/api/auth/login", json={"username": "agnes", "password": PASSWORD})
        assert again.status_code == 401
        assert (await admin.post("/api/admin/accounts/root/disable")).status_code == 409  # not yourself


async def test_login_is_rate_limited_per_account(stack: Stack) -> None:
    await stack.account("agnes")
    async with stack.client() as client:
        codes = [
            (
                await client.post("/api/auth/login", json={"username": "agnes", "password": "wrong pass!"})
            ).status_code
            for _ in range(5)
        ]
        blocked = await client.post("/api/auth/login", json={"username": "agnes", "password": PASSWORD})
    assert codes == [401] * 5
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    entries = await stack.desk.audit.recent()
    assert entries[0].action == "login.throttled" and entries[1].action == "login.failed"


async def test_login_is_rate_limited_per_address(redis, keys) -> None:
    async with running_stack(redis, keys) as stack:
        from bots.desk.throttle import LoginThrottle

        stack.desk.throttle = LoginThrottle(redis, keys, "100/minute", "3/minute")
        async with stack.client() as client:
            codes = [
                (
                    await client.post("/api/auth/login", json={"username": f"u{i}", "password": "x" * 12})
                ).status_code
                for i in range(4)
            ]
    assert codes == [401, 401, 401, 429]  # different names, one address


async def test_session_requests_that_change_state_need_the_csrf_token(stack: Stack) -> None:
    ticket = await stack.open_ticket("web-csrf")
    async with signed_in(stack, "agnes") as agent:
        token = agent.headers.pop("X-CSRF-Token")
        cross_site = await agent.post(f"/api/desk/tickets/{ticket.id}/claim")
        assert cross_site.status_code == 403 and "CSRF" in cross_site.json()["error"]
        wrong = await agent.post(
            f"/api/desk/tickets/{ticket.id}/claim", headers={"X-CSRF-Token": "x" + token}
        )
        assert wrong.status_code == 403
        assert (await stack.tickets.get(ticket.id)).status.value == "open"
        ok = await agent.post(f"/api/desk/tickets/{ticket.id}/claim", headers={"X-CSRF-Token": token})
        assert ok.status_code == 200
    api_token = await stack.account("script")
    async with stack.client() as script:  # a Bearer token needs no CSRF token
        r = await script.post(
            f"/api/desk/tickets/{ticket.id}/release", headers={"Authorization": f"Bearer {api_token}"}
        )
    assert r.status_code == 409  # someone else's active claim: a conflict, not a CSRF error


async def test_the_queue_lists_newest_activity_first_with_counts_and_filters(stack: Stack) -> None:
    older = await stack.open_ticket("web-1", name="First")
    newer = await stack.open_ticket("web-2", name="<script>alert(1)</script>")
    telegram = await stack.open_ticket("42", platform="telegram")
    async with signed_in(stack, "agnes") as agent:
        await agent.post(f"/api/desk/tickets/{older.id}/claim")
        r = await agent.get("/api/desk/tickets", params={"status": "open"})
        body = r.json()
        assert r.headers["cache-control"] == "no-store"
        assert [t["id"] for t in body["tickets"]] == [telegram.id, newer.id]
        assert body["counts"] == {"open": 2, "claimed": 1, "resolved": 0}
        assert body["tickets"][1]["display_name"] == "<script>alert(1)</script>"  # data, shown as text
        everything = (await agent.get("/api/desk/tickets", params={"status": "all"})).json()["tickets"]
        assert everything[0]["id"] == older.id  # the claim is its newest activity
        web_only = (await agent.get("/api/desk/tickets", params={"status": "all", "platform": "web"})).json()
        assert {t["id"] for t in web_only["tickets"]} == {older.id, newer.id}
        assert (await agent.get("/api/desk/tickets", params={"status": "lost"})).status_code == 400


async def test_ticket_actions_and_their_errors(stack: Stack) -> None:
    async with stack.client() as customer:
        user = (await customer.post("/api/chat", json={"text": "hello"})).json()["user"]
    ticket = await stack.open_ticket(user, name="Carol")
    async with signed_in(stack, "agnes") as agnes, signed_in(stack, "bruno") as bruno:
        assert (await agnes.get("/api/desk/tickets/nope")).status_code == 404
        assert (await agnes.get("/api/desk/tickets/..%2F..%2Fetc")).status_code == 404
        shown = (await agnes.get(f"/api/desk/tickets/{ticket.id}")).json()
        assert shown["ticket"]["display_name"] == "Carol"
        assert [t["text"] for t in shown["transcript"]][:1] == ["hello"]
        assert shown["audit"][0]["action"] == "opened"
        claims = await asyncio.gather(
            agnes.post(f"/api/desk/tickets/{ticket.id}/claim"),
            bruno.post(f"/api/desk/tickets/{ticket.id}/claim"),
        )
        assert sorted(r.status_code for r in claims) == [200, 409]  # exactly one wins
        holder, other = (agnes, bruno) if claims[0].status_code == 200 else (bruno, agnes)
        assert (
            await other.post(f"/api/desk/tickets/{ticket.id}/reply", json={"text": "me too"})
        ).status_code == 409
        assert (
            await holder.post(f"/api/desk/tickets/{ticket.id}/reply", json={"text": "  "})
        ).status_code == 400
        assert (await holder.post(f"/api/desk/tickets/{ticket.id}/reply", json=["x"])).status_code == 400
        r = await holder.post(f"/api/desk/tickets/{ticket.id}/reply", json={"text": "Hello Carol"})
        assert r.status_code == 200 and r.json()["turn"]["role"] == "agent"
        assert (await holder.post(f"/api/desk/tickets/{ticket.id}/release")).json()["ticket"][
            "status"
        ] == "open"
        resolved = await holder.post(f"/api/desk/tickets/{ticket.id}/resolve")
        assert resolved.json()["ticket"]["status"] == "resolved"
        assert (
            await holder.post(f"/api/desk/tickets/{ticket.id}/reply", json={"text": "late"})
        ).status_code == 409
        assert (await holder.post(f"/api/desk/tickets/{ticket.id}/resolve")).status_code == 409
        transcript = (await holder.get(f"/api/desk/tickets/{ticket.id}")).json()["transcript"]
        assert {"role": "agent", "text": "Hello Carol"}.items() <= transcript[-1].items()
    actions = [e.action for e in await stack.desk.audit.recent()]
    assert {"ticket.claim", "ticket.reply", "ticket.release", "ticket.resolve"} <= set(actions)


async def test_admin_edits_personas_with_the_cli_rules_and_versions(stack: Stack) -> None:
    before = len(await stack.personas.versions("support"))
    async with signed_in(stack, "root", Role.ADMIN) as admin:
        shown = (await admin.get("/api/admin/personas/support")).json()
        assert shown["persona"]["display_name"] == "Ava" and "display_name: Ava" in shown["yaml"]
        assert "support" in (await admin.get("/api/admin/personas")).json()["bots"]
        assert (await admin.get("/api/admin/personas/ghost")).status_code == 404
        persona = shown["persona"]
        persona["display_name"] = "<img src=x onerror=alert(1)>"
        persona["routing"]["routes"]["track_order"] = "escalate"
        saved = await admin.put("/api/admin/personas/support", json={"persona": persona})
        assert saved.status_code == 200 and saved.json()["version"] == before + 1
        persona["generation"]["temperature"] = 9
        bad = await admin.put("/api/admin/personas/support", json={"persona": persona})
        assert bad.status_code == 400
        assert (
            bad.json()["error"] == "field 'generation.temperature': Input should be less than or equal to 5"
        )
        broken_yaml = dump_persona(await stack.personas.get("support")).replace("top_k: 50", "top_k: -1")
        with pytest.raises(ConfigError) as cli:
            parse_persona(broken_yaml, "support.yaml")
        r = await admin.put("/api/admin/personas/support", json={"yaml": broken_yaml})
        assert r.status_code == 400 and r.json()["error"] == str(cli.value)  # the CLI's very words
        persona["generation"]["temperature"] = 0.7
        other = await admin.put("/api/admin/personas/support", json={"persona": {**persona, "bot_id": "x"}})
        assert other.status_code == 400 and "bot_id" in other.json()["error"]
        versions = (await admin.get("/api/admin/personas/support")).json()["versions"]
    assert len(versions) == before + 1 and versions[-1]["author"] == "desk:root"
    live = await stack.personas.get("support")
    assert (
        live.display_name == "<img src=x onerror=alert(1)>"
        and live.routing.routes["track_order"] == "escalate"
    )


async def test_preview_runs_classifier_router_and_generator_on_a_draft(stack: Stack) -> None:
    async with signed_in(stack, "root", Role.ADMIN) as admin:
        r = await admin.post("/api/admin/personas/support/preview", json={"text": "where is my order?"})
        assert r.status_code == 200, r.text
        assert r.json()["intent"] == "track_order" and r.json()["route"] == "generate"
        assert r.json()["reply"].startswith("answer to where is my order?")
        draft = (await stack.personas.get("support")).model_dump(mode="json")
        draft["routing"]["routes"]["track_order"] = "escalate"
        r = await admin.post(
            "/api/admin/personas/support/preview", json={"text": "where is my order?", "persona": draft}
        )
        assert r.json()["route"] == "escalate" and r.json()["reply"] == draft["messages"]["handoff"]
        draft["quick_replies"] = {
            "rephrase": [{"label": "Talk to a person", "intent": "contact_human_agent"}]
        }
        unsure = await admin.post(
            "/api/admin/personas/support/preview", json={"text": "[oos:0.9] hmm", "persona": draft}
        )
        assert unsure.json()["route"] == "rephrase" and unsure.json()["buttons"] == ["Talk to a person"]
        intents = (await admin.get("/api/admin/intents/support")).json()["intents"]
        assert "track_order" in intents
    assert (await stack.personas.get("support")).routing.routes.get("track_order") is None  # not saved


async def test_admin_manages_accounts_and_reads_the_audit_log(stack: Stack) -> None:
    async with signed_in(stack, "root", Role.ADMIN) as admin:
        r = await admin.post(
            "/api/admin/accounts", json={"username": "newbie", "role": "agent", "password": "long enough pw"}
        )
        assert r.status_code == 201 and r.json()["account"]["role"] == "agent"
        assert (
            await admin.post(
                "/api/admin/accounts",
                json={"username": "Bad Name!", "role": "agent", "password": "long enough pw"},
            )
        ).status_code == 400
        assert (
            await admin.post(
                "/api/admin/accounts", json={"username": "x", "role": "boss", "password": "long enough pw"}
            )
        ).status_code == 400
        assert (
            await admin.post(
                "/api/admin/accounts", json={"username": "y", "role": "agent", "password": "short"}
            )
        ).status_code == 400
        names = [a["username"] for a in (await admin.get("/api/admin/accounts")).json()["accounts"]]
        assert names == ["newbie", "root"]
        changed = await admin.post(
            "/api/admin/accounts/newbie/password", json={"password": "another long one"}
        )
        assert changed.status_code == 200
        assert await stack.desk.accounts.verify("newbie", "long enough pw") is None
        assert await stack.desk.accounts.verify("newbie", "another long one") is not None
        assert (await admin.post("/api/admin/accounts/ghost/disable")).status_code == 400
        log = (await admin.get("/api/admin/audit")).json()["entries"]
    assert [e["action"] for e in log][:2] == ["account.password", "account.create"]
    assert log[0]["actor"] == "root" and log[0]["detail"] == "newbie"


async def test_bad_bodies_are_4xx_never_5xx(stack: Stack) -> None:
    async with signed_in(stack, "root", Role.ADMIN) as admin:
        nested = b'{"persona": ' + b"[" * 3000 + b"]" * 3000 + b"}"
        r = await admin.put(
            "/api/admin/personas/support", content=nested, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        huge = await admin.put(
            "/api/admin/personas/support", content=b"{}", headers={"content-length": str(10 * 1024 * 1024)}
        )
        assert huge.status_code == 413
        assert (await admin.put("/api/admin/personas/support", content=b"{not json")).status_code == 400
        login = await admin.post(
            "/api/auth/login", content=b"[" * 3000, headers={"content-type": "application/json"}
        )
        assert login.status_code == 400
        form = await admin.post("/api/auth/login", data={"username": "root", "password": PASSWORD})
        assert form.status_code == 415  # a cross-site HTML form cannot sign anyone in


async def test_openapi_documents_every_api_route(stack: Stack) -> None:
    async with stack.client() as client:
        doc = (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    served: set[tuple[str, str]] = set()
    for route in stack.app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path, method.lower()))
        assert not (isinstance(route, Mount) and route.path.startswith("/api"))
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    assert doc["paths"] == PATHS


async def test_pages_are_plain_shells_with_strict_headers(stack: Stack) -> None:
    async with stack.client() as client:
        for path in (
            "/desk/",
            "/desk/login",
            "/desk/tickets/abc",
            "/desk/admin/personas",
            "/desk/admin/accounts",
            "/desk/admin/audit",
        ):
            r = await client.get(path)
            assert r.status_code == 200 and "<script>" not in r.text and "innerHTML" not in r.text, path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert "unsafe-inline" not in r.headers["content-security-policy"]
        scripts = [
            (await client.get(f"/desk/static/{n}.js")).text
            for n in ("desk", "login", "queue", "ticket", "personas", "accounts", "audit")
        ]
    assert all(s and "innerHTML" not in s and "insertAdjacentHTML" not in s for s in scripts)


def test_persona_model_is_what_the_api_validates() -> None:
    assert Persona.model_fields.keys() >= {"display_name", "routing", "messages", "generation", "facts"}
