"""Markdown as each platform writes it, including input written to break the markup."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from adapters.markup import (
    _PARSER,
    escape_slack,
    from_slack_text,
    to_discord_markdown,
    to_slack_mrkdwn,
    to_telegram_html,
)

HOSTILE = [
    "**never closed",
    "*a **b* c**",  # interleaved markers
    "`unclosed code",
    "```\nfence never closed",
    "</b><script>alert(1)</script><b>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1)) ![x](data:text/html,<script>)",
    "&lt;b&gt; &amp; &#60;i&#62; & < > \" '",
    "> quote\n- item\n\n1. one\n   - nested **bold",
]
TELEGRAM_TAGS = {"b", "i", "s", "code", "pre", "a", "blockquote"}


class _Tags(HTMLParser):
    """Checks Telegram HTML as Telegram does: known tags only, properly nested."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in TELEGRAM_TAGS, tag
        assert tag == "a" or not attrs
        assert all(v is not None and v.startswith(("http://", "https://")) for _, v in attrs)
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible_telegram(text: str) -> str:
    parser = _Tags()
    parser.feed(to_telegram_html(text))
    parser.close()
    assert parser.open == [], f"left open: {parser.open}"
    return "".join(parser.text)


# -- Telegram ------------------------------------------------------------------------------
def test_telegram_formats_markdown_and_escapes_everything_else() -> None:
    text = "**Steps**\n- open `<settings>`\n* pay & go\n```\nif a < b:\n    **x**\n```"
    assert to_telegram_html(text) == (
        "<b>Steps</b>\n• open <code>&lt;settings&gt;</code>\n• pay &amp; go\n"
        "<pre>if a &lt; b:\n    **x**\n</pre>"
    )
    assert to_telegram_html('# Title\n*it* ~~no~~ [site](https://x.example/?a=1&b="2")') == (
        '<b>Title</b>\n<i>it</i> <s>no</s> <a href="https://x.example/?a=1&amp;b=%222%22">site</a>'
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_telegram_html_is_always_well_formed(text: str) -> None:
    visible = visible_telegram(text)  # known tags, balanced, only http(s) links
    assert "<script>" not in to_telegram_html(text)
    assert ("alert(1)" in visible) == ("alert(1)" in text)  # shown as text, not dropped


def test_telegram_shows_entities_as_written() -> None:
    assert to_telegram_html("&lt;b&gt; &amp; &#60;") == "&amp;lt;b&amp;gt; &amp;amp; &amp;#60;"
    assert visible_telegram("**never closed") == "**never closed"
    assert visible_telegram("`unclosed code") == "`unclosed code"
    assert to_telegram_html("[mail](mailto:a@b.c)") == "mail (mailto:a@b.c)"  # only http(s) links


# -- Slack ----------------------------------------------------------------------------------
def test_slack_mrkdwn() -> None:
    text = (
        "# Order\n**Total** is < $5 & *maybe* ~~more~~\n"
        "- see [the page](https://x.example/a?b=1&c=2)\n`a<b **c**`"
    )
    assert to_slack_mrkdwn(text) == (
        "*Order*\n*Total* is &lt; $5 &amp; _maybe_ ~more~\n"
        "• see <https://x.example/a?b=1&amp;c=2|the page>\n`a&lt;b **c**`"
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_slack_never_lets_through_control_sequences(text: str) -> None:
    out = to_slack_mrkdwn(text)
    # Slack's control sequences (<@user>, <!channel>, links) start with "<"; the only
    # ones we write are http(s) links the markdown asked for.
    assert "<" not in out.replace("<https://", "").replace("<http://", "")


def test_slack_escapes_entities_and_keeps_unbalanced_markers() -> None:
    assert to_slack_mrkdwn("&lt; & <@U123> <!channel>") == "&amp;lt; &amp; &lt;@U123&gt; &lt;!channel&gt;"
    assert to_slack_mrkdwn("**never closed") == "**never closed"
    assert escape_slack("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_incoming_text_loses_the_mention_and_slack_escapes() -> None:
    assert from_slack_text("<@UBOT> is 1 &lt; 2 &amp; <https://x.example|x.example>?", "UBOT") == (
        "is 1 < 2 & x.example?"
    )


# -- Discord --------------------------------------------------------------------------------
def test_discord_markdown() -> None:
    text = "# Order\n**Total** *maybe* ~~more~~\n- see [the page](https://x.example/a)\n`a*b`"
    assert to_discord_markdown(text) == (
        "# Order\n**Total** *maybe* ~~more~~\n- see [the page](<https://x.example/a>)\n`a*b`"
    )


def test_discord_escapes_markers_that_were_not_formatting() -> None:
    assert to_discord_markdown("**never closed") == r"\*\*never closed"
    assert to_discord_markdown("snake_case_name and ||spoiler||") == r"snake\_case\_name and \|\|spoiler\|\|"
    assert to_discord_markdown("see https://x.example/a_b_c") == "see https://x.example/a_b_c"  # URLs intact
    assert to_discord_markdown("[click](javascript:alert(1))") == r"\[click\](javascript:alert(1))"
    assert to_discord_markdown("`` a`b ``") == "``a`b``"  # the fence outlasts a backtick inside


@pytest.mark.parametrize("text", [*HOSTILE, "a_b_c *x* __y__ ~~z~~ | # not a heading"])
def test_discord_reads_back_as_the_same_markdown(text: str) -> None:
    """Discord's markdown is close to CommonMark: parsing what we send must give back the
    same formatting and the same visible text, so no marker changed meaning."""
    assert structure(to_discord_markdown(text)) == structure(text)


def structure(markdown: str) -> list[tuple[str, str]]:
    tokens = _PARSER.parse(markdown)
    flat = [child for t in tokens for child in ([t, *(t.children or [])])]
    kept = [t for t in flat if t.type not in ("inline", "softbreak", "hardbreak")]
    merged: list[tuple[str, str]] = []
    for t in kept:  # escapes split text tokens differently: compare the joined text
        content = t.content if t.type in ("text", "code_inline") else ""
        content = t.content.rstrip("\n") if t.type == "fence" else content  # closing adds a newline
        if merged and t.type == "text" and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + content)
        else:
            merged.append((t.type, content))
    return merged
