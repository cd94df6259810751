"""The framework's exceptions, one small tree.

    ChatbotError                 anything the framework raises on purpose
     ├── ConfigError             a setting, file or persona is wrong (names the key/file/line)
     ├── RedisUnavailable        the configured Redis cannot be reached
     ├── ModelMissing            a model folder is absent or unreadable
     ├── DeliveryError           a platform send failed; the reply stays queued and is retried
     │    ├── RateLimited        the platform said 429; retry after ``retry_after`` seconds
     │    ├── AdapterAuthError   the credentials are wrong; that adapter stops, others go on
     │    └── PermanentDeliveryError  the platform refused this one reply for good (the
     │                           bot was blocked, the chat is gone); it is dropped
     ├── ConversationNotFound    the bot never talked to that user there (a proactive message: 404)
     ├── BotUnavailable          the bot is disabled, or nothing serves it on that platform (409)
     ├── TicketNotFound          no ticket has that id (the desk answers 404)
     └── TicketStateError        the ticket's state forbids the action, e.g. reply on resolved (409)
          └── ClaimConflict      another, still active agent holds the claim (409)

Every message is one line a user can act on: what is wrong and what to do.
"""

from __future__ import annotations


class ChatbotError(Exception):
    """Base class: ``str(error)`` is the one line shown to a user."""


class ConfigError(ChatbotError):
    """A setting, a YAML file or a persona field is invalid."""


class RedisUnavailable(ChatbotError):
    """The Redis server named by REDIS_URL (or the embedded one) cannot be reached."""


class ModelMissing(ChatbotError):
    """A model folder does not exist or does not load."""


class DeliveryError(ChatbotError):
    """Sending a reply to a platform failed for a reason that may pass (network, 5xx)."""


class RateLimited(DeliveryError):
    """The platform asked us to slow down; the same send may be retried after the delay."""

    def __init__(self, retry_after: float, message: str = "") -> None:
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(message or f"rate limited; retry after {self.retry_after:.1f}s")


class AdapterAuthError(DeliveryError):
    """The platform rejected our credentials; retrying will not help."""


class PermanentDeliveryError(DeliveryError):
    """The platform refused this reply and always will (blocked, removed, chat deleted):
    the outbox drops it with one log line, so it cannot hold up that chat's later replies."""


class ConversationNotFound(ChatbotError):
    """A proactive message names a customer the bot has no conversation with (there)."""


class BotUnavailable(ChatbotError):
    """The bot is unknown or disabled, does not serve the platform, or no process delivers
    its messages there now."""


class TicketNotFound(ChatbotError):
    """No ticket has the given id (a typo, or it expired long after being resolved)."""


class TicketStateError(ChatbotError):
    """The ticket's status does not allow the action (claiming a resolved ticket...)."""


class ClaimConflict(TicketStateError):
    """Another agent holds the ticket and has been active within the claim timeout."""
