"""`chatbot admin ...` and `chatbot token create` against real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bots.cli import app
from bots.desk.accounts import Accounts, desk_key
from core.connection import connect
from core.keys import Keys


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, keys: Keys, tmp_path) -> Keys:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHATBOT_NAMESPACE", keys.namespace)
    monkeypatch.chdir(tmp_path)
    return keys


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def test_first_admin_from_the_command_line_then_tokens_disable_and_reset(
    env: Keys, redis, redis_url: str
) -> None:
    created = cli(
        "admin", "create-user", "root", "--role", "admin", "--password-stdin", stdin="a long password\n"
    )
    assert created.exit_code == 0, created.output
    again = cli(
        "admin", "create-user", "root", "--role", "admin", "--password-stdin", stdin="a long password\n"
    )
    assert again.exit_code == 2 and "already exists" in again.output
    short = cli("admin", "create-user", "bob", "--role", "agent", "--password-stdin", stdin="short\n")
    assert short.exit_code == 2 and "10 to 1024 characters" in short.output
    bad = cli("admin", "create-user", "Bad Name", "--role", "agent", "--password-stdin", stdin="x" * 12)
    assert bad.exit_code == 2 and "invalid username" in bad.output
    no_tty = cli("admin", "create-user", "eve", "--role", "agent", stdin="")
    assert no_tty.exit_code == 2 and "--password-stdin" in no_tty.output

    token = cli("token", "create", "root")
    assert token.exit_code == 0
    secret = token.output.strip()
    owner, stored, signs_in = asyncio.run(_inspect(redis_url, env, secret, "a long password"))
    assert owner == "root" and signs_in
    assert stored and all(secret not in key for key in stored)  # only the token's hash is kept
    listed = cli("admin", "list")
    assert "root" in listed.output and "admin" in listed.output and "active" in listed.output
    assert (
        cli("admin", "reset-password", "root", "--password-stdin", stdin="another long one\n").exit_code == 0
    )
    assert cli("admin", "disable", "root").exit_code == 0
    assert "disabled" in cli("admin", "list").output
    assert cli("admin", "disable", "ghost").exit_code == 2
    owner, _stored, signs_in = asyncio.run(_inspect(redis_url, env, secret, "another long one"))
    assert owner is None and not signs_in  # a disabled account: no token, no sign-in


async def _inspect(url: str, keys: Keys, token: str, password: str) -> tuple[str | None, list[str], bool]:
    client = await connect(url, Path("var"))
    try:
        accounts = Accounts(client, keys)
        owner = await accounts.token_owner(token)
        stored = [k async for k in client.scan_iter(match=desk_key(keys, "token", "*"))]
        return (
            (owner.username if owner else None),
            stored,
            await accounts.verify("root", password) is not None,
        )
    finally:
        await client.aclose()
