"""What a failed platform call means for delivery, decided once for every adapter.

The outbox acts on the error's class (``core.errors``): ``RateLimited`` waits the
platform's Retry-After, ``AdapterAuthError`` stops the adapter, ``PermanentDeliveryError``
drops the reply (retrying cannot fix it, and it would block its chat's lane), and any
other ``DeliveryError`` backs off and retries.
"""

from __future__ import annotations

import datetime as dt
import math

from core.errors import AdapterAuthError, ChatbotError, DeliveryError, PermanentDeliveryError, RateLimited

DEFAULT_RETRY_AFTER = 5.0  # seconds, when a 429 does not say how long to wait


def retry_after_seconds(value: object, default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds to wait, from a Retry-After header or an SDK's field (a number, a numeric
    string or a timedelta); ``default`` when it is missing or unreadable."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if not isinstance(value, (int, float, str)):
        return default
    try:
        seconds = float(value)
    except ValueError:
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


def for_status(
    status: int, detail: str, *, auth: AdapterAuthError, retry_after: object = None
) -> ChatbotError:
    """The error for a call that failed with HTTP ``status`` (0: no answer at all): 401 is
    ``auth``; 429 waits ``retry_after``; none or 5xx is retried; any other 4xx (no
    permission, a deleted chat, a request the platform refuses) is permanent."""
    if status == 401:
        return auth
    if status == 429:
        return RateLimited(retry_after_seconds(retry_after))
    if status == 0 or status >= 500:
        return DeliveryError(detail)
    return PermanentDeliveryError(detail)


# What a platform's refusal means, in words an operator can act on (the platforms' rules
# on who a bot may write to: docs/platforms.md, "Proactive messages").
_REFUSALS: dict[str, tuple[tuple[str, str], ...]] = {
    "telegram": (
        ("blocked by the user", "the user blocked the bot"),
        ("initiate conversation", "Telegram lets a bot write only to users who started it"),
        ("chat not found", "the user never started the bot, or the chat is gone"),
        ("user is deactivated", "the user deleted their Telegram account"),
    ),
    "discord": (
        ("50007", "Discord lets a bot DM only users who share a server with it and accept DMs"),
        ("10003", "the channel is gone"),
        ("50001", "the bot has no access to that channel"),
    ),
    "slack": (
        ("channel_not_found", "the channel is gone, or the bot is not in it"),
        ("not_in_channel", "invite the bot to the channel"),
        ("is_archived", "the channel is archived"),
        ("user_not_found", "the user is not in the app's workspace"),
    ),
}


def explain_refusal(platform: str, detail: str) -> str:
    """``detail`` with the reason behind a known refusal, e.g. a Telegram 403."""
    lowered = detail.lower()
    for needle, why in _REFUSALS.get(platform, ()):
        if needle in lowered:
            return f"{detail} ({why})"
    return detail
