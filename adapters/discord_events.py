"""Discord gateway events read into :class:`Event` s, and the interactions' side of
replies, for ``adapters.discord``.

A message becomes the customer's text (the bot's mention taken out), its attachments
(with Discord's CDN link) and its stickers. Quick replies are buttons (message
components, five to a row) whose ``custom_id`` is the quick reply's payload. Clicks and
the ``/help`` and ``/human`` application commands arrive as INTERACTION_CREATE over the
gateway (discord.py's ``on_interaction``), keyed on the interaction's id; once intake
took one it is acknowledged within Discord's 3 seconds through the interaction callback
(:func:`acknowledge`): a click with UPDATE_MESSAGE (its buttons give way to the choice,
marked and disabled), a command with a deferred response ("thinking..."), which the
answer then replaces (:func:`edit_original`; a channel message once the interaction's
15-minute token expired). The commands are registered at start (:func:`register_commands`);
without the ``applications.commands`` scope one log line says how to add it.

Interaction callbacks and webhook edits are sent with the client's own HTTP client (its
REST root is configurable), not discord.py's webhook adapter (fixed to discord.com).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import discord
from discord.http import HTTPClient
from discord.http import Route as DiscordRoute

from adapters.base import Event
from adapters.interactive import DONE, chosen, kind_of
from core.messages import Attachment, IncomingMessage, QuickReply, Reply

log = logging.getLogger(__name__)

PLATFORM = "discord"
UPDATE_MESSAGE, DEFERRED_CHANNEL_MESSAGE = 7, 5  # interaction callback types
COMMANDS = [
    {"name": "help", "type": 1, "description": "What this bot can do"},
    {"name": "human", "type": 1, "description": "Talk to a person from the support team"},
]
SCOPE_HELP = (
    "discord: /help and /human are not registered (Discord said %s); invite the bot with the "
    "applications.commands scope (Developer Portal > OAuth2 > URL Generator: bot + applications.commands)"
)
TOKEN_GONE = {401, 404}  # an interaction token expired (15 minutes) or unknown


def message_event(message: discord.Message, me_id: int, bot_id: str) -> Event:
    """The Event of a MESSAGE_CREATE, keyed on the message id (a resumed session may
    redeliver it)."""
    meta = {"message_id": str(message.id), "channel_id": str(message.channel.id)}
    guild_id = message.guild.id if message.guild else getattr(message.channel, "guild_id", None)
    if guild_id:
        meta["guild_id"] = str(guild_id)
    found = [
        Attachment(
            kind="voice" if a.is_voice_message() else kind_of(a.content_type or ""),
            size=a.size,
            file_id=str(a.id),
            url=a.url,
            name=a.filename,
            mime=a.content_type or "",
        )
        for a in message.attachments
    ]
    found += [Attachment(kind="sticker", file_id=str(s.id), name=s.name) for s in message.stickers]
    incoming = IncomingMessage(
        bot_id,
        PLATFORM,
        chat_id=str(message.channel.id),
        user_id=str(message.author.id),
        text=strip_mention(message.content, me_id),
        display_name=message.author.display_name,
        message_id=str(message.id),
        meta=meta,
        attachments=tuple(found),
    )
    system = message.type not in (discord.MessageType.default, discord.MessageType.reply)
    return Event(
        incoming,
        event_id=str(message.id),
        # bots, ourselves, webhooks; system messages (joins, pins) are nobody talking
        from_bot=message.author.bot or message.author.id == me_id or bool(message.webhook_id) or system,
        direct=isinstance(message.channel, (discord.DMChannel, discord.GroupChannel)),
        addressed=_addresses(message, me_id),
    )


def interaction_event(interaction: discord.Interaction, bot_id: str) -> tuple[Event, str] | None:
    """The Event of a click on one of our buttons or of ``/help``/``/human``, and the
    label clicked ("" for a command); None for any other interaction."""
    data: dict[str, Any] = dict(interaction.data or {})
    meta = {"channel_id": str(interaction.channel_id)}
    if interaction.guild_id:
        meta["guild_id"] = str(interaction.guild_id)
    label, command, choice = "", "", None
    if interaction.type is discord.InteractionType.component:
        custom_id = str(data.get("custom_id") or "")
        choice = (
            None if custom_id == DONE else QuickReply.from_payload(custom_id, _label(interaction, custom_id))
        )
        if choice is None:
            return None
        label = choice.label
    elif interaction.type is discord.InteractionType.application_command and data.get("name") in (
        "help",
        "human",
    ):
        command = str(data["name"])
        meta |= {"interaction_token": interaction.token, "application_id": str(interaction.application_id)}
    else:
        return None
    user, key = interaction.user, f"interaction:{interaction.id}"
    incoming = IncomingMessage(
        bot_id,
        PLATFORM,
        chat_id=str(interaction.channel_id),
        user_id=str(user.id),
        text=choice.sends if choice else f"/{command}",
        display_name=user.display_name,
        message_id=key,
        meta=meta,
        command=command,
        intent=choice.intent if choice else "",
    )
    return Event(incoming, key, from_bot=user.bot, direct=interaction.guild_id is None, addressed=True), label


async def acknowledge(http: HTTPClient, interaction: discord.Interaction, label: str) -> None:
    """Answer the interaction within Discord's deadline: mark the click's choice, or
    defer the command's response. A failure is one log line (the message is queued)."""
    body: dict[str, Any] = {"type": DEFERRED_CHANNEL_MESSAGE}
    if label:
        body = {"type": UPDATE_MESSAGE, "data": {"components": _marked(label).to_components()}}
    route = DiscordRoute(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        interaction_id=interaction.id,
        interaction_token=interaction.token,
    )
    try:
        await http.request(route, json=body)
    except discord.HTTPException as exc:
        log.warning("discord: interaction %s not acknowledged: %s %s", interaction.id, exc.status, exc.text)


def buttons(choices: Sequence[QuickReply]) -> discord.ui.View | None:
    """Message components for ``choices`` (None for none). The view is stopped: clicks
    come back as interactions to the adapter, not to discord.py's view store."""
    if not choices:
        return None
    view = discord.ui.View(timeout=None)
    for choice in choices:
        view.add_item(discord.ui.Button(label=choice.label, custom_id=choice.payload))
    view.stop()
    return view


def answers_command(reply: Reply) -> bool:
    """Whether ``reply`` answers an application command (and replaces its "thinking...")."""
    return bool(reply.meta.get("interaction_token")) and reply.in_reply_to.startswith("interaction:")


async def edit_original(
    http: HTTPClient, reply: Reply, content: str, view: discord.ui.View | None
) -> str | None:
    """Put the answer in the command's deferred response; its message id, or None when
    the interaction's token is gone (the caller sends a channel message instead)."""
    route = DiscordRoute(
        "PATCH",
        "/webhooks/{application_id}/{interaction_token}/messages/@original",
        application_id=reply.meta["application_id"],
        interaction_token=reply.meta["interaction_token"],
    )
    components = view.to_components() if view else []
    body = {"content": content, "components": components, "allowed_mentions": {"parse": []}}
    try:
        message = await http.request(route, json=body)
    except discord.HTTPException as exc:
        if exc.status not in TOKEN_GONE:
            raise
        return None
    return str(message["id"])


async def register_commands(http: HTTPClient, application_id: int | None) -> None:
    """Register ``/help`` and ``/human`` (idempotent: a bulk overwrite); without the
    scope, one log line saying how."""
    if application_id is None:
        return
    try:
        await http.bulk_upsert_global_commands(application_id, COMMANDS)
    except discord.HTTPException as exc:
        log.warning(SCOPE_HELP, f"{exc.status} {exc.text or ''}".strip())


def strip_mention(content: str, bot_user_id: int) -> str:
    """Drop ``<@id>``/``<@!id>`` of our bot and tidy the spaces around it."""
    return re.sub(rf"\s*<@!?{bot_user_id}>\s*", " ", content).strip()


def _addresses(message: discord.Message, bot_user_id: int) -> bool:
    """A mention of the bot, or a reply to one of its messages."""
    if bot_user_id in message.raw_mentions or any(user.id == bot_user_id for user in message.mentions):
        return True
    resolved = message.reference.resolved if message.reference else None
    return isinstance(resolved, discord.Message) and resolved.author.id == bot_user_id


def _label(interaction: discord.Interaction, custom_id: str) -> str:
    """The label of the button clicked, read off the message it is on."""
    message = interaction.message
    for row in message.components if message else ():
        for item in getattr(row, "children", ()):
            if getattr(item, "custom_id", None) == custom_id:
                return str(getattr(item, "label", "") or "")
    return ""


def _marked(label: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(
        discord.ui.Button(
            label=chosen(label), custom_id=DONE, disabled=True, style=discord.ButtonStyle.success
        )
    )
    view.stop()
    return view


__all__ = [
    "acknowledge",
    "answers_command",
    "buttons",
    "edit_original",
    "interaction_event",
    "message_event",
    "register_commands",
    "strip_mention",
]
