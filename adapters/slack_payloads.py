"""Slack events, clicks and slash commands read into :class:`Event` s, and the Block Kit
buttons, for ``adapters.slack``.

Quick replies are Block Kit buttons: the reply's text in ``section`` blocks, then one
``actions`` block whose buttons carry the quick reply's payload as ``value``. A click
arrives as a ``block_actions`` payload at the app's Interactivity Request URL (the same
``/slack/events``, signature-checked by bolt like events, or over Socket Mode), keyed on
its ``trigger_id``; once intake took it the buttons give way to the chosen label, marked,
with ``chat.update``. A slash command (whatever the app names it, e.g. ``/support``)
reads its first word: ``help`` (or nothing) for ``/help``, ``human`` for ``/human``; any
other text is a message to the bot. Files (photos, documents, audio clips) become
:class:`Attachment` records with Slack's file id and permalink.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from adapters.base import Event
from adapters.interactive import chosen, kind_of
from adapters.markup import from_slack_text, to_slack_mrkdwn
from core.messages import Attachment, IncomingMessage, QuickReply
from core.text import split_message

PLATFORM = "slack"
ACTION_PREFIX = "qr-"  # action_id of our buttons: qr-0, qr-1...
SECTION_CHARS = 3000  # Slack's limit for a section block's text
# Message subtypes written by a person; everything else (bot_message, message_changed,
# message_deleted, channel_join, ...) is not a customer talking to the bot.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})


def message_event(
    event: dict[str, Any], body: dict[str, Any], bot_id: str, bot_user: str, *, mention: bool
) -> Event | None:
    """The Event of a ``message`` or ``app_mention`` (None for edits, joins, and the copy
    of a mention Slack sends twice), keyed on the envelope's ``event_id``."""
    if event.get("subtype") not in USER_SUBTYPES or not event.get("user"):
        return None  # edits, deletions, joins: not a customer writing
    channel = str(event.get("channel") or "")
    is_dm = event.get("channel_type") == "im" or (not event.get("channel_type") and channel.startswith("D"))
    raw_text = str(event.get("text") or "")
    # Slack sends a mention in a channel twice (message + app_mention) and a DM once
    # (message): answer the app_mention in channels and the message in DMs.
    if (mention and is_dm) or (not mention and not is_dm and f"<@{bot_user}>" in raw_text):
        return None
    ts = str(event.get("ts") or "")
    thread_ts = str(event.get("thread_ts") or ("" if is_dm else ts))
    message = IncomingMessage(
        bot_id=bot_id,
        platform=PLATFORM,
        chat_id=channel,
        user_id=str(event["user"]),
        text=from_slack_text(raw_text, bot_user),
        message_id=ts or uuid.uuid4().hex,
        meta={"channel": channel, "thread_ts": thread_ts, "team": str(body.get("team_id") or "")},
        attachments=attachments_of(event),
    )
    return Event(
        message,
        event_id=body.get("event_id"),
        from_bot=bool(event.get("bot_id")),  # other bots, and our own replies
        direct=is_dm,
        addressed=mention,
    )


def blocks(text: str, choices: Sequence[QuickReply]) -> list[dict[str, Any]] | None:
    """Block Kit for a reply part with buttons (None without: plain ``text`` is enough)."""
    if not choices:
        return None
    sections: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": to_slack_mrkdwn(chunk)}}
        for chunk in split_message(text, SECTION_CHARS)
    ]
    buttons = [
        {
            "type": "button",
            "action_id": f"{ACTION_PREFIX}{number}",
            "text": {"type": "plain_text", "text": choice.label, "emoji": True},
            "value": choice.payload,
        }
        for number, choice in enumerate(choices)
    ]
    return [*sections, {"type": "actions", "elements": buttons}]


def tap_event(body: dict[str, Any], bot_id: str) -> tuple[Event, QuickReply] | None:
    """The Event of a click on one of our buttons, and the choice (None for anything else)."""
    action = (body.get("actions") or [{}])[0]
    label = str((action.get("text") or {}).get("text") or "")
    choice = QuickReply.from_payload(str(action.get("value") or ""), label)
    user, container = body.get("user") or {}, body.get("container") or {}
    channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
    if choice is None or not user.get("id") or not channel:
        return None
    key = f"action:{body.get('trigger_id') or action.get('action_ts')}"
    thread_ts = str((body.get("message") or {}).get("thread_ts") or "")  # the buttons' thread
    incoming = IncomingMessage(
        bot_id=bot_id,
        platform=PLATFORM,
        chat_id=channel,
        user_id=str(user["id"]),
        display_name=str(user.get("name") or user.get("username") or ""),
        message_id=key,
        meta={"channel": channel, "thread_ts": thread_ts, "team": _team(body)},
        text=choice.sends,
        intent=choice.intent,
    )
    return Event(incoming, key, direct=channel.startswith("D"), addressed=True), choice


def marked(body: dict[str, Any], label: str) -> tuple[str, str, list[dict[str, Any]]]:
    """``(channel, ts, blocks)`` for the ``chat.update`` that replaces the clicked
    message's buttons with the choice."""
    container, message = body.get("container") or {}, body.get("message") or {}
    kept = [b for b in message.get("blocks") or [] if b.get("type") != "actions"]
    note = {"type": "context", "elements": [{"type": "mrkdwn", "text": to_slack_mrkdwn(chosen(label))}]}
    return str(container.get("channel_id") or ""), str(container.get("message_ts") or ""), [*kept, note]


def command_event(payload: dict[str, Any], bot_id: str) -> Event:
    """The Event of a slash command: ``help``/``human`` as commands, other text as a message."""
    words = str(payload.get("text") or "").split()
    first = words[0].lower() if words else "help"
    command = first if first in ("help", "human") else ""
    channel, key = str(payload.get("channel_id") or ""), f"command:{payload.get('trigger_id')}"
    incoming = IncomingMessage(
        bot_id=bot_id,
        platform=PLATFORM,
        chat_id=channel,
        user_id=str(payload.get("user_id") or ""),
        text=f"/{command}" if command else " ".join(words),
        display_name=str(payload.get("user_name") or ""),
        message_id=key,
        meta={"channel": channel, "thread_ts": "", "team": str(payload.get("team_id") or "")},
        command=command,
    )
    return Event(incoming, key, direct=channel.startswith("D"), addressed=True)


def attachments_of(event: dict[str, Any]) -> tuple[Attachment, ...]:
    """A message's files (audio clips included), with Slack's permalink."""
    return tuple(
        Attachment(
            kind=kind_of(str(f.get("mimetype") or "")),
            size=int(f.get("size") or 0),
            file_id=str(f.get("id") or ""),
            url=str(f.get("permalink") or ""),
            name=str(f.get("name") or ""),
            mime=str(f.get("mimetype") or ""),
        )
        for f in event.get("files") or []
        if isinstance(f, dict)
    )


def _team(body: dict[str, Any]) -> str:
    return str((body.get("team") or {}).get("id") or body.get("team_id") or "")


__all__ = [
    "ACTION_PREFIX",
    "attachments_of",
    "blocks",
    "command_event",
    "marked",
    "message_event",
    "tap_event",
]
