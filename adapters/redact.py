"""Keeping secrets out of logs and error lines.

An SDK or its HTTP client may log a request URL with the bot token in it (the Telegram
Bot API puts it in the path), and an SDK's error text may repeat it. Each platform
adapter installs one :class:`RedactSecrets` on its SDK's loggers and passes error texts
through it; the secrets are its config's ``repr=False`` fields.
"""

from __future__ import annotations

import logging


class RedactSecrets(logging.Filter):
    """Replaces secrets (tokens in request URLs, webhook secrets) in log records and in
    error texts, so an SDK's or HTTP client's logging never shows them."""

    def __init__(self, *secrets: str | None) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, "<redacted>")
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            record.msg, record.args = self.text(message), None
        return True
