"""The server's signing secret: ``CHATBOT_SECRET_KEY``, or one generated on first start
and kept in ``DATA_DIR/secret_key`` (mode 0600) so web-chat identities survive restarts.
Never logged."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bots.config import Settings
from core.errors import ConfigError


def secret_key(settings: Settings) -> str:
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        value = settings.secret_key.get_secret_value().strip()
        if len(value) < 16:
            raise ConfigError("invalid setting CHATBOT_SECRET_KEY: use at least 16 random characters")
        return value
    return _stored_key(settings.data_dir / "secret_key")


def _stored_key(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot create {path} ({exc.strerror}); set CHATBOT_SECRET_KEY instead") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key
