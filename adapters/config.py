"""Checks a platform config runs on itself (in ``__post_init__``), so a bad value fails at
start with one line naming its setting, never later inside an SDK call."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from core.errors import ConfigError


def require(ok: bool, problem: str) -> None:
    """One config check: ``problem`` names the setting and says what to do."""
    if not ok:
        raise ConfigError(problem)


def is_url(value: str | None, *, schemes: tuple[str, ...] = ("http", "https"), path: bool = False) -> bool:
    """A full URL with one of ``schemes`` (and a path, when ``path``)."""
    url = urlparse(value or "")
    return url.scheme in schemes and bool(url.netloc) and (not path or url.path not in ("", "/"))


def require_url(
    value: str | None,
    setting: str,
    *,
    schemes: tuple[str, ...] = ("http", "https"),
    path: bool = False,
    example: str = "",
    optional: bool = False,
) -> None:
    """A URL setting (``optional`` ones may be unset; ``path`` ones, a route we serve, need a
    path), refused in one line that names ``setting`` and shows what was given."""
    if optional and value is None:
        return
    kinds = f"{schemes[0]}(s)" if schemes == (schemes[0], schemes[0] + "s") else "/".join(schemes)
    shape = (
        f"a full {kinds} URL" + (" with a path" if path else "") + (f" such as {example}" if example else "")
    )
    require(is_url(value, schemes=schemes, path=path), f"{setting} must be {shape} (got {value!r})")


def host(url: str) -> str:
    """The host (and port) of a configured URL, for error lines: not its path, where an SDK
    may put the token."""
    return urlparse(url).netloc or url


def with_names(line: str, names: dict[str, str]) -> str:
    """``line`` naming a bot's own variables (SHOP_TELEGRAM_TOKEN) where a platform module
    names the default ones (TELEGRAM_BOT_TOKEN): ``names`` maps default -> own."""
    for default, own in names.items():
        line = re.sub(rf"\b{default}\b", own, line)
    return line
