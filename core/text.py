"""Cleaning what customers type and cutting what the bot says to fit a platform."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# C0/C1 control characters except tab and newline, plus lone UTF-16 surrogates that
# some platforms let through and that Redis/JSON consumers choke on.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200b\ufeff]")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class CleanText:
    text: str
    truncated: bool
    original_length: int

    @property
    def empty(self) -> bool:
        return not self.text.strip()


def clean_incoming(text: str, limit: int) -> CleanText:
    """Strip control characters and invalid surrogates, keep emoji and any script,
    and cut at ``limit`` characters (never inside a grapheme's combining marks)."""
    if not isinstance(text, str):
        text = str(text)
    original = len(text)
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))
    text = _BLANK_LINES.sub("\n\n", text).strip()
    truncated = len(text) > limit
    if truncated:
        cut = limit
        while cut > 0 and unicodedata.combining(text[cut]):
            cut -= 1
        text = text[:cut].rstrip()
    return CleanText(text=text, truncated=truncated, original_length=original)


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


def split_message(text: str, limit: int) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters for a platform.

    Prefers paragraph breaks, then line breaks, then sentence ends, then spaces; a word
    is only cut when it alone is longer than ``limit``. Markdown code fences are closed
    at a cut and reopened in the next chunk so no entity is left half open.
    """
    if limit < 16:
        raise ValueError("split_message: limit must be at least 16 characters")
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit - 4]  # room for a fence ("\n```") if we must close one
        cut = _best_cut(window)
        chunk, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if chunk.count("```") % 2 == 1:
            chunk += "\n```"
            rest = "```\n" + rest
        chunks.append(chunk)
    if rest:
        chunks.append(rest)
    return chunks


def _best_cut(window: str) -> int:
    floor = len(window) // 3  # never make absurdly short chunks
    for pattern in ("\n\n", "\n"):
        at = window.rfind(pattern)
        if at > floor:
            return at + len(pattern)
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() > floor]
    if ends:
        return ends[-1]
    at = window.rfind(" ")
    if at > floor:
        return at + 1
    return len(window)
