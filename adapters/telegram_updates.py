"""Telegram updates read into :class:`Event` s, and the inline keyboards, for
``adapters.telegram``.

A message becomes the customer's text (or a photo's caption), its command and its
attachments. Commands are the message's leading ``bot_command`` entity: ``/start`` (a
deep link's payload is kept in meta ``start``), ``/help`` and ``/human``
(``/help@this_bot`` in groups too); other commands are text. Photos, documents, voice
notes, stickers... become :class:`Attachment` records with Telegram's file id; there is
no link, as Telegram's file links hold the bot token.

Quick replies are an inline keyboard, one button a row, whose ``callback_data`` is the
quick reply's payload. A tap arrives as a ``callback_query`` update, keyed on the
query's id; once intake took it (not on a redelivery) it is answered with
answerCallbackQuery and the keyboard gives way to the chosen label, marked, with
editMessageReplyMarkup (:func:`acknowledge`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ChatType, MessageAttachmentType
from telegram.error import TelegramError

from adapters.base import Event
from adapters.interactive import DONE, chosen
from core.messages import Attachment, IncomingMessage, QuickReply, parse_command

log = logging.getLogger(__name__)
PLATFORM = "telegram"
_ADDRESSING: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]


def message_event(update: Update, bot_id: str, me_id: int, mention: re.Pattern[str]) -> Event | None:
    """The Event of a new message (None for anything else: an edit, a channel post...);
    keyed on the bot's id and the update id, as update ids are per bot."""
    message = update.message
    user = message.from_user if message else None
    if message is None or user is None:
        return None
    command, argument = command_of(message)
    incoming = IncomingMessage(
        bot_id=bot_id,
        platform=PLATFORM,
        chat_id=str(message.chat.id),
        user_id=str(user.id),
        text=" ".join(mention.sub(" ", message.text or message.caption or "").split()),
        display_name=user.full_name,
        message_id=f"{message.chat.id}:{message.message_id}",
        meta=reply_meta(message) | ({"start": argument} if command == "start" and argument else {}),
        command=command,
        attachments=attachments_of(message),
    )
    return Event(
        incoming,
        event_id=f"{me_id}:{update.update_id}",
        from_bot=user.is_bot,
        direct=message.chat.type == ChatType.PRIVATE,
        addressed=not user.is_bot and addressed_to(message, me_id, mention),
    )


def tap_event(query: CallbackQuery, bot_id: str, me_id: int) -> tuple[Event, QuickReply] | None:
    """The Event of a tap on a quick reply, and the choice; None for a button already
    marked, or one that is not ours."""
    message, data, label = query.message, query.data or "", ""
    markup = getattr(message, "reply_markup", None)  # absent on an inaccessible message
    for row in markup.inline_keyboard if isinstance(markup, InlineKeyboardMarkup) else ():
        label = next((b.text for b in row if b.callback_data == data), label)
    choice = None if data == DONE else QuickReply.from_payload(data, label)
    if choice is None or message is None:
        return None
    user, chat = query.from_user, message.chat
    incoming = IncomingMessage(
        bot_id=bot_id,
        platform=PLATFORM,
        chat_id=str(chat.id),
        user_id=str(user.id),
        display_name=user.full_name,
        message_id=f"callback:{query.id}",
        meta=reply_meta(message),
        text=choice.sends,
        intent=choice.intent,
    )
    key = f"{me_id}:callback:{query.id}"
    return Event(
        incoming, key, from_bot=user.is_bot, direct=chat.type == ChatType.PRIVATE, addressed=True
    ), choice


async def acknowledge(query: CallbackQuery, label: str) -> None:
    """Answer the tap (ends the button's spinner) and mark the choice on the keyboard.
    Cosmetic: a failure is one log line; the customer's choice is queued already."""
    try:
        await query.answer()
        await query.edit_message_reply_markup(
            InlineKeyboardMarkup([[InlineKeyboardButton(chosen(label), callback_data=DONE)]])
        )
    except TelegramError as exc:
        log.warning("telegram: could not acknowledge a tap on %r: %s", label, exc)


def keyboard(choices: Sequence[QuickReply]) -> InlineKeyboardMarkup | None:
    """The inline keyboard for ``choices``, one button a row (None for no choices)."""
    if not choices:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(c.label, callback_data=c.payload)] for c in choices])


def reply_meta(message: Message | Any) -> dict[str, str]:
    """Where the answer goes: the message (replied to in groups) and its forum topic."""
    meta = {"message_id": str(message.message_id), "chat_type": str(message.chat.type)}
    if getattr(message, "is_topic_message", False) and message.message_thread_id:
        meta["thread_id"] = str(message.message_thread_id)
    return meta


def addressed_to(message: Message, me_id: int, mention: re.Pattern[str]) -> bool:
    """An @mention of the bot ``me_id`` (in the text or a caption) or a reply to it."""
    replied = message.reply_to_message
    if replied and replied.from_user and replied.from_user.id == me_id:
        return True
    found = {**message.parse_entities(_ADDRESSING), **message.parse_caption_entities(_ADDRESSING)}
    return any(
        (entity.user is not None and entity.user.id == me_id) or mention.search(text) is not None
        for entity, text in found.items()
    )


def command_of(message: Message) -> tuple[str, str]:
    """``(command, argument)`` when the message starts with a command the router knows,
    else ``("", "")``."""
    first = (message.entities or (None,))[0]
    if first is None or first.type != MessageEntity.BOT_COMMAND or first.offset != 0:
        return "", ""
    return parse_command(message.text or "")


def attachments_of(message: Message) -> tuple[Attachment, ...]:
    """What the message carries besides text (a photo: its largest size)."""
    found = []
    for kind in MessageAttachmentType:
        value = getattr(message, kind.value, None)
        if isinstance(value, (list, tuple)):  # a photo: its sizes, smallest first
            value = value[-1] if value else None
        if not value:
            continue
        found.append(
            Attachment(
                kind=str(kind.value),
                size=int(getattr(value, "file_size", 0) or 0),
                file_id=str(getattr(value, "file_id", "") or ""),
                name=str(getattr(value, "file_name", "") or ""),
                mime=str(getattr(value, "mime_type", "") or ""),
            )
        )
    return tuple(found)


__all__ = ["acknowledge", "attachments_of", "command_of", "keyboard", "message_event", "tap_event"]
