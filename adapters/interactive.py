"""Buttons, commands and attachments: what the platform modules share for them.

A reply's quick replies go under its last part (:func:`buttons_for`). A tap comes back
with the quick reply's payload (``QuickReply.payload``: what it sends, at most 64
bytes) and becomes the message the customer chose (``QuickReply.sends``), keyed
on the platform's interaction id, so a redelivered tap is taken once and acknowledged
on the platform once (``Intake.taken``). After a tap the buttons give way to the
choice, marked (:func:`chosen`), whose payload :data:`DONE` does nothing. The console
numbers its options (:func:`numbered`, :func:`pick`); the web chat's page sends a
choice, a command or text (:func:`asked`). Commands typed as text (``/help``) are read
by ``core.messages.parse_command``; an attachment's kind comes from its MIME type where
the platform gives no kind (:func:`kind_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.webjson import BadRequest
from core.messages import COMMANDS, QuickReply, Reply, parse_command
from core.text import split_message

DONE = "x"  # the payload of a button already chosen: a tap on it changes nothing


def buttons_for(reply: Reply, part: int, max_chars: int) -> tuple[QuickReply, ...]:
    """The quick replies to put under part ``part`` of ``reply``: all of them under the
    last part, none under the others."""
    if not reply.quick_replies:
        return ()
    last = len(split_message(reply.text, max_chars)) - 1
    return reply.quick_replies if part >= last else ()


def chosen(label: str) -> str:
    """What a button reads once the customer chose it."""
    return f"✓ {label}"


def numbered(choices: Sequence[QuickReply]) -> list[str]:
    """Options as numbered lines, for a platform without buttons."""
    return [f"{number}. {choice.label}" for number, choice in enumerate(choices, start=1)]


def pick(text: str, offered: Sequence[QuickReply]) -> QuickReply | None:
    """The option a typed number (``2``, ``2.``) names; None for anything else."""
    typed = text.strip().rstrip(".")
    if typed.isdigit() and 1 <= int(typed) <= len(offered):
        return offered[int(typed) - 1]
    return None


def asked(data: dict[str, Any]) -> tuple[str, str, str]:
    """``(text, command, intent)`` of a web chat request: a quick reply's ``choice`` (with
    its label as ``text``), a ``command`` (the "talk to a person" button), or typed text
    (``/help`` typed is a command too). BadRequest(400) for a choice or command not ours."""
    text, choice, command = data.get("text", ""), data.get("choice"), data.get("command")
    if choice is not None:
        picked = QuickReply.from_payload(choice, text) if isinstance(choice, str) else None
        if picked is None:
            raise BadRequest(400, '"choice" must be the "choice" of one of a reply\'s quick_replies')
        return picked.sends, "", picked.intent
    if command is not None:
        if command not in COMMANDS:
            raise BadRequest(400, f'"command" must be one of: {", ".join(COMMANDS)}')
        return text or f"/{command}", str(command), ""
    return text, parse_command(text)[0], ""


def kind_of(mime: str, default: str = "document") -> str:
    """A photo, audio, video or ``default`` kind of file, by its MIME type."""
    top = (mime or "").partition("/")[0]
    return {"image": "photo", "audio": "audio", "video": "video"}.get(top, default)


__all__ = ["DONE", "asked", "buttons_for", "chosen", "kind_of", "numbered", "pick"]
