"""The engine's markdown, written the way each platform displays formatting.

Replies (the model's and the personas') use ordinary markdown. markdown-it-py parses it
once, so every marker is either matched (and rendered) or plain text (and escaped):
an unbalanced ``**`` or a ``<script>`` in a reply can never break a platform's markup.
Raw HTML and entities are not interpreted: what was written is what is shown.

    to_telegram_html   Telegram's HTML parse mode (<b>, <i>, <s>, <code>, <pre>, <a>)
    to_slack_mrkdwn    Slack mrkdwn (*bold*, _italic_, ~strike~, <url|label>)
    to_discord_markdown  Discord's markdown (close to CommonMark; literal text escaped)

and the one platform whose incoming text needs reading back: ``from_slack_text``.
"""

from __future__ import annotations

import html
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

# "commonmark" without raw HTML and without entity decoding, plus ~~strikethrough~~.
_PARSER = MarkdownIt("commonmark", {"html": False}).disable("entity").enable("strikethrough")


@dataclass(frozen=True, slots=True)
class Style(ABC):
    """How one platform writes each piece of markdown."""

    strong: tuple[str, str]
    em: tuple[str, str]
    strike: tuple[str, str]
    bullet: str
    quote: tuple[str, str]  # around a quote block (HTML) ...
    quote_line: str  # ... or in front of each of its lines (markdown-like)

    @abstractmethod
    def text(self, text: str) -> str:
        """Literal text, escaped so the platform shows it as written."""

    @abstractmethod
    def code(self, code: str) -> str: ...

    @abstractmethod
    def fence(self, code: str, info: str) -> str: ...

    @abstractmethod
    def web_link(self, label: str, href: str) -> str: ...

    def link(self, label: str, href: str) -> str:
        """Only http(s) links become links; any other scheme is shown as text."""
        if href.startswith(("http://", "https://")):
            return self.web_link(label, href)
        return f"{label} ({self.text(href)})"

    def heading(self, level: int, body: str) -> str:
        return f"{self.strong[0]}{body}{self.strong[1]}"


class _TelegramHTML(Style):
    def text(self, text: str) -> str:
        return html.escape(text, quote=False)

    def code(self, code: str) -> str:
        return f"<code>{html.escape(code, quote=False)}</code>"

    def fence(self, code: str, info: str) -> str:
        return f"<pre>{html.escape(code, quote=False)}</pre>"

    def web_link(self, label: str, href: str) -> str:
        return f'<a href="{html.escape(href, quote=True)}">{label}</a>'


class _SlackMrkdwn(Style):
    def text(self, text: str) -> str:
        return escape_slack(text)

    def code(self, code: str) -> str:
        return f"`{escape_slack(code)}`"

    def fence(self, code: str, info: str) -> str:
        return f"```{escape_slack(code)}```"

    def web_link(self, label: str, href: str) -> str:
        return f"<{escape_slack(href)}|{label}>"


_DISCORD_SPECIAL = re.compile(r"([\\*_~`|\[\]])")
_DISCORD_LINE_START = re.compile(r"^([ \t]*)([>#+-]|\d+[.)])", re.MULTILINE)
_BARE_URL = re.compile(r"(https?://\S+)")


class _DiscordMarkdown(Style):
    def text(self, text: str) -> str:
        # Bare URLs stay as they are (Discord links them; a backslash would break them).
        parts = _BARE_URL.split(text)
        for i in range(0, len(parts), 2):
            parts[i] = _DISCORD_SPECIAL.sub(r"\\\1", parts[i])
        return _DISCORD_LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", "".join(parts))

    def code(self, code: str) -> str:
        ticks = "`" * (max(map(len, re.findall("`+", code)), default=0) + 1)
        pad = " " if code.startswith("`") or code.endswith("`") else ""
        return f"{ticks}{pad}{code}{pad}{ticks}"

    def fence(self, code: str, info: str) -> str:
        code = code.replace("```", "`\u200b``")  # a fence inside cannot close ours
        return f"```{info}\n{code}```" if code.endswith("\n") else f"```{info}\n{code}\n```"

    def web_link(self, label: str, href: str) -> str:
        return f"[{label}](<{href}>)"

    def heading(self, level: int, body: str) -> str:
        return f"{'#' * level} {body}" if level <= 3 else f"**{body}**"


TELEGRAM = _TelegramHTML(
    ("<b>", "</b>"), ("<i>", "</i>"), ("<s>", "</s>"), "• ", ("<blockquote>", "</blockquote>"), ""
)
SLACK = _SlackMrkdwn(("*", "*"), ("_", "_"), ("~", "~"), "• ", ("", ""), "> ")
DISCORD = _DiscordMarkdown(("**", "**"), ("*", "*"), ("~~", "~~"), "- ", ("", ""), "> ")


def to_telegram_html(text: str) -> str:
    """``text`` as Telegram HTML (``parse_mode="HTML"``); every other character escaped."""
    return render(text, TELEGRAM)


def to_slack_mrkdwn(text: str) -> str:
    """``text`` as Slack mrkdwn; ``& < >`` escaped everywhere, as Slack requires."""
    return render(text, SLACK)


def to_discord_markdown(text: str) -> str:
    """``text`` as Discord markdown; markers that were not formatting are backslash-escaped."""
    return render(text, DISCORD)


def escape_slack(text: str) -> str:
    """Slack's only escaping rule: ``&``, ``<`` and ``>`` as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_LINK = re.compile(r"<(?:[^<>|]*\|)?([^<>]*)>")


def from_slack_text(text: str, bot_user_id: str) -> str:
    """A customer's Slack text as plain text: our mention removed, ``<url|label>`` and
    ``<#C1|name>`` reduced to their label, Slack's ``&amp; &lt; &gt;`` undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = _SLACK_LINK.sub(lambda m: m.group(1), text)
    return re.sub(r"[ \t]{2,}", " ", html.unescape(text)).strip()


def render(text: str, style: Style) -> str:
    """Walk markdown-it's block tokens; blocks keep the blank lines they had in ``text``."""
    out: list[str] = []
    indents = [""]  # what a line inside each open list item starts with
    quotes = 0  # depth of open quote blocks
    heading = 0  # level of the heading being written; 0 outside one
    last_line: int | None = None  # the line after the previous text block
    line_open = False  # a list item or quote has begun the line its first block continues

    def new_line(token: Token) -> str:
        nonlocal line_open
        if line_open:
            line_open = False
            return ""
        start = token.map[0] if token.map else last_line or 0
        gap = 0 if last_line is None else max(1, min(2, start - last_line + 1))
        return "\n" * gap + style.quote_line * quotes

    def ends(token: Token) -> None:
        nonlocal last_line
        last_line = token.map[1] if token.map else last_line

    for token in _PARSER.parse(text):
        kind = token.type
        if kind == "list_item_open":
            marker = f"{token.info}{token.markup} " if token.info else style.bullet
            out.append(new_line(token) + indents[-1] + marker)
            indents.append(indents[-1] + " " * len(marker))  # nested lists line up under the text
            line_open = True
        elif kind == "list_item_close":
            indents.pop()
        elif kind == "blockquote_open":
            if style.quote[0]:
                out.append(new_line(token) + style.quote[0])
                line_open = True
            quotes += 1
        elif kind == "blockquote_close":
            quotes -= 1
            out.append(style.quote[1])
        elif kind in ("paragraph_open", "heading_open"):
            out.append(new_line(token))
            ends(token)
            heading = int(token.tag[1:]) if kind == "heading_open" else 0
        elif kind == "inline":
            body = _inline(token.children or [], style, "\n" + style.quote_line * quotes)
            out.append(style.heading(heading, body) if heading else body)
        elif kind in ("fence", "code_block"):
            out.append(new_line(token) + style.fence(token.content, token.info))
            ends(token)
        elif kind == "hr":
            out.append(new_line(token) + "———")
            ends(token)
    return "".join(out)


def _inline(children: list[Token], style: Style, newline: str) -> str:
    out: list[str] = []
    links: list[tuple[str, int]] = []  # (href, where its label starts in out)
    for child in children:
        kind = child.type
        if kind == "text":
            out.append(style.text(child.content))
        elif kind in ("softbreak", "hardbreak"):
            out.append(newline)
        elif kind == "code_inline":
            out.append(style.code(child.content))
        elif kind in ("strong_open", "em_open", "s_open"):
            out.append(_pair(style, kind)[0])
        elif kind in ("strong_close", "em_close", "s_close"):
            out.append(_pair(style, kind)[1])
        elif kind == "link_open":
            links.append((str(child.attrs.get("href", "")), len(out)))
        elif kind == "link_close" and links:
            href, at = links.pop()
            label = "".join(out[at:])
            del out[at:]
            out.append(style.link(label, href))
        elif kind == "image":
            alt = style.text(child.content or "image")
            out.append(style.link(alt, str(child.attrs.get("src", ""))))
        else:  # anything new in the parser: its source text, escaped
            out.append(style.text(child.content))
    return "".join(out)


def _pair(style: Style, kind: str) -> tuple[str, str]:
    return {"strong": style.strong, "em": style.em, "s": style.strike}[kind.split("_")[0]]
