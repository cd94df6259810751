"""``chatbot admin ...`` and ``chatbot token create``: desk accounts from the command line.

The first admin is created here (nothing ships with a default password). Passwords are
asked for twice without echo, or read from standard input with ``--password-stdin`` for
scripts; they never appear in arguments, shell history or logs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from bots.config import load_settings
from bots.console import fail, friendly, out
from bots.desk.accounts import Accounts, Role, check_password, check_username
from bots.desk.audit import DeskAudit
from bots.desk.auth import Sessions

T = TypeVar("T")

admin_app = typer.Typer(help="Support-desk accounts: create, disable, reset passwords.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for scripts (Authorization: Bearer ...).", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="account name (lowercase a-z 0-9 _ . -)")]
StdinOpt = Annotated[bool, typer.Option("--password-stdin", help="read the password from standard input")]


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
    app.add_typer(token_app, name="token")


def _with_accounts(fn: Callable[[Accounts, DeskAudit, Any], Awaitable[T]]) -> T:
    from bots.runtime import Runtime

    async def main() -> T:
        settings = load_settings()
        async with Runtime(settings, seed_personas=False) as rt:
            sessions = Sessions(rt.redis, rt.keys, int(settings.desk_session_hours * 3600))
            return await fn(Accounts(rt.redis, rt.keys), DeskAudit(rt.redis, rt.keys), sessions)

    return asyncio.run(main())


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        fail("no terminal to ask for the password on; pipe it in with --password-stdin")
    return check_password(password)


@admin_app.command("create-user")
@friendly
def create_user(
    name: NameArg,
    role: Annotated[Role, typer.Option("--role", help="agent works tickets; admin also runs the bots")],
    password_stdin: StdinOpt = False,
) -> None:
    """Create a desk account."""
    check_username(name)
    password = _password(password_stdin)

    async def create(accounts: Accounts, audit: DeskAudit, _s: Sessions) -> None:
        await accounts.create(name, role, password)
        await audit.record("cli", "account.create", f"{name} ({role.value})")

    _with_accounts(create)
    out.print(f"account {name} ({role.value}) created; sign in at /desk/login")


@admin_app.command("disable")
@friendly
def disable(name: NameArg) -> None:
    """Disable an account: it cannot sign in, its sessions and tokens stop working."""

    async def change(accounts: Accounts, audit: DeskAudit, sessions: Sessions) -> None:
        await accounts.set_disabled(name, True)
        await sessions.end_all(name)
        await audit.record("cli", "account.disable", name)

    _with_accounts(change)
    out.print(f"account {name} disabled")


@admin_app.command("enable")
@friendly
def enable(name: NameArg) -> None:
    """Enable a disabled account again."""

    async def change(accounts: Accounts, audit: DeskAudit, _s: Sessions) -> None:
        await accounts.set_disabled(name, False)
        await audit.record("cli", "account.enable", name)

    _with_accounts(change)
    out.print(f"account {name} enabled")


@admin_app.command("reset-password")
@friendly
def reset_password(name: NameArg, password_stdin: StdinOpt = False) -> None:
    """Set a new password; the account is signed out everywhere."""
    password = _password(password_stdin)

    async def change(accounts: Accounts, audit: DeskAudit, sessions: Sessions) -> None:
        await accounts.set_password(name, password)
        await sessions.end_all(name)
        await audit.record("cli", "account.password", name)

    _with_accounts(change)
    out.print(f"password of {name} changed")


@admin_app.command("list")
@friendly
def list_accounts() -> None:
    """Accounts with their role and state."""

    async def read(accounts: Accounts, _a: DeskAudit, _s: Sessions) -> list[Any]:
        return await accounts.all()

    rows = _with_accounts(read)
    if not rows:
        out.print("no accounts; create the first admin with `chatbot admin create-user NAME --role admin`")
    for account in rows:
        state = "disabled" if account.disabled else "active"
        out.print(f"{account.username:<32} {account.role.value:<6} {state}")


@token_app.command("create")
@friendly
def create_token(name: NameArg) -> None:
    """Print a new API token for an account, once (only its hash is stored)."""

    async def make(accounts: Accounts, audit: DeskAudit, _s: Sessions) -> str:
        token = await accounts.create_token(name)
        await audit.record("cli", "token.create", name)
        return token

    token = _with_accounts(make)
    out.print(token, highlight=False, soft_wrap=True)
