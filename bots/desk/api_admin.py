"""The admins' JSON API: personas (every field, routing rules included) with a preview,
the intents a bot's classifier knows, accounts, and the desk's audit log.

Persona edits are validated by the same model and reported in the same words as
``chatbot persona import`` (YAML gets file-style ``line`` numbers too), and saved through
``PersonaStore.put`` like the CLI's, so ``chatbot persona versions`` lists them.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.webjson import BadRequest, read_object
from bots.desk.accounts import Role
from bots.desk.auth import Principal, guarded
from bots.desk.preview import preview
from bots.personas import dump_persona, parse_persona
from core.errors import ConfigError
from core.persona import Persona

if TYPE_CHECKING:
    from bots.desk.app import Desk


def persona_from_json(data: object) -> Persona:
    """Validate a persona object; errors read like ``chatbot persona import``'s."""
    if not isinstance(data, dict):
        raise ConfigError("a persona must be a mapping of fields (bot_id, display_name, ...)")
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"] if p != "__root__") or "(top level)"
        raise ConfigError(f"field '{field}': {error['msg']}") from None


def _persona_from_body(data: dict[str, Any], bot_id: str) -> Persona:
    if isinstance(data.get("yaml"), str):
        persona = parse_persona(data["yaml"], f"{bot_id}.yaml")
    else:
        persona = persona_from_json(data.get("persona"))
    if persona.bot_id != bot_id:
        raise BadRequest(400, f"field 'bot_id': {persona.bot_id!r} does not match the URL's {bot_id!r}")
    return persona


def _role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise BadRequest(400, "role must be agent or admin") from None


def _password(data: dict[str, Any]) -> str:
    password = data.get("password")
    if not isinstance(password, str):
        raise BadRequest(400, 'give "password" as a string')
    return password


def admin_routes(desk: Desk) -> list[BaseRoute]:
    personas, accounts = desk.personas, desk.accounts

    async def bots(request: Request, who: Principal) -> Response:
        return JSONResponse({"bots": await personas.bot_ids()})

    async def show_persona(request: Request, who: Principal) -> Response:
        bot_id = str(request.path_params["bot"])
        found = await personas.get_many([bot_id])
        if bot_id not in found:
            return JSONResponse({"error": f"no persona for bot {bot_id[:64]!r}"}, status_code=404)
        versions = await personas.versions(bot_id)
        return JSONResponse(
            {
                "persona": found[bot_id].model_dump(mode="json"),
                "yaml": dump_persona(found[bot_id]),
                "versions": [{"at": v["at"], "author": v["author"]} for v in versions],
            }
        )

    async def put_persona(request: Request, who: Principal) -> Response:
        bot_id = str(request.path_params["bot"])
        persona = _persona_from_body(await read_object(request, desk.config.max_body_bytes), bot_id)
        version = await personas.put(persona, author=f"desk:{who.username}")
        await desk.audit.record(who.username, "persona.save", f"{bot_id} version {version}")
        return JSONResponse({"version": version, "persona": persona.model_dump(mode="json")})

    async def preview_persona(request: Request, who: Principal) -> Response:
        bot_id = str(request.path_params["bot"])
        data = await read_object(request, desk.config.max_body_bytes)
        text = data.get("text")
        if not isinstance(text, str):
            raise BadRequest(400, 'give the test message as {"text": "..."}')
        persona = _persona_from_body(data, bot_id) if "persona" in data or "yaml" in data else None
        if persona is None:
            persona = await personas.get(bot_id)
        result = await preview(desk.models, persona, text, desk.config.max_message_chars)
        return JSONResponse(result.to_dict())

    async def intents(request: Request, who: Principal) -> Response:
        persona = await personas.get(str(request.path_params["bot"]))
        model = await asyncio.to_thread(desk.models.intent_model, persona.models.intent)
        return JSONResponse({"model": persona.models.intent, "intents": sorted(model.labels)})

    async def list_accounts(request: Request, who: Principal) -> Response:
        return JSONResponse({"accounts": [a.to_dict() for a in await accounts.all()]})

    async def create_account(request: Request, who: Principal) -> Response:
        data = await read_object(request, desk.config.max_body_bytes)
        username = str(data.get("username", "")).strip()
        account = await accounts.create(username, _role(data.get("role")), _password(data))
        await desk.audit.record(who.username, "account.create", f"{username} ({account.role.value})")
        return JSONResponse({"account": account.to_dict()}, status_code=201)

    def set_disabled(disabled: bool) -> Any:
        async def endpoint(request: Request, who: Principal) -> Response:
            username = str(request.path_params["username"])
            if disabled and username == who.username:
                raise BadRequest(409, "you cannot disable your own account")
            account = await accounts.set_disabled(username, disabled)
            if disabled:
                await desk.sessions.end_all(username)
            await desk.audit.record(
                who.username, "account.disable" if disabled else "account.enable", username
            )
            return JSONResponse({"account": account.to_dict()})

        return endpoint

    async def reset_password(request: Request, who: Principal) -> Response:
        username = str(request.path_params["username"])
        await accounts.set_password(
            username, _password(await read_object(request, desk.config.max_body_bytes))
        )
        await desk.sessions.end_all(username)
        await desk.audit.record(who.username, "account.password", username)
        return JSONResponse({"ok": True})

    async def audit_log(request: Request, who: Principal) -> Response:
        raw = request.query_params.get("limit", "200")
        limit = min(int(raw), 5000) if raw.isdigit() else 200
        return JSONResponse({"entries": [asdict(e) for e in await desk.audit.recent(limit)]})

    def admin(path: str, handler: Any, method: str = "GET") -> Route:
        return Route(path, guarded(desk.auth, handler, admin=True), methods=[method])

    account = "/api/admin/accounts/{username}"
    return [
        admin("/api/admin/personas", bots),
        Route(
            "/api/admin/personas/{bot}",
            _by_method(
                GET=guarded(desk.auth, show_persona, admin=True),
                PUT=guarded(desk.auth, put_persona, admin=True),
            ),
            methods=["GET", "PUT"],
        ),
        admin("/api/admin/personas/{bot}/preview", preview_persona, "POST"),
        admin("/api/admin/intents/{bot}", intents),
        Route(
            "/api/admin/accounts",
            _by_method(
                GET=guarded(desk.auth, list_accounts, admin=True),
                POST=guarded(desk.auth, create_account, admin=True),
            ),
            methods=["GET", "POST"],
        ),
        admin(account + "/disable", set_disabled(True), "POST"),
        admin(account + "/enable", set_disabled(False), "POST"),
        admin(account + "/password", reset_password, "POST"),
        admin("/api/admin/audit", audit_log),
    ]


def _by_method(**handlers: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        return await handlers.get(request.method, handlers["GET"])(request)  # HEAD as GET

    return endpoint
