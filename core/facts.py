"""The fact guard: a reply may repeat facts, never invent them.

A small dialogue LM learns that support replies contain order numbers, phone numbers,
e-mail addresses and links, and writes ones nobody gave it ("cancel your order number
370795561790"). After generation (and after the persona's slots are filled), every
such item in a reply that neither the customer's turns nor the persona's facts contain
is replaced with a generic phrase for its kind ("your order", "the number you gave us",
"our website", "our support email address", "our support phone line").

:func:`guard_reply` returns the cleaned text, how many items it replaced (for a
Prometheus counter) and whether the reply lost its point, i.e. little but replaced
phrases is left, so the engine can regenerate or send the persona's fallback instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from core.phrasing import NUMBER_PHRASE, at_sentence_start, number_phrase, talks_about_orders

# Kinds of items the guard checks, and the phrase each becomes when invented.
NUMBER, AMOUNT, PHONE, EMAIL, URL = "number", "amount", "phone", "email", "url"
PHRASES: dict[str, str] = {
    NUMBER: NUMBER_PHRASE,
    AMOUNT: "the amount",
    PHONE: "our support phone line",
    EMAIL: "our support email address",
    URL: "our website",
}

_TLDS = r"com|org|net|io|co|uk|de|fr|es|it|nl|eu|us|ca|au|info|biz|shop|store|app|dev|online|site|help"
# Bounded quantifiers throughout: a hostile 100 kB message costs linear time.
_ITEM = re.compile(
    r"(?P<email>[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8})"
    r"|(?P<url>(?:https?://|www\.)[^\s<>\"'`]{1,2000}"
    rf"|(?<![\w@.-])[A-Za-z0-9][A-Za-z0-9-]{{0,62}}(?:\.[A-Za-z0-9-]{{1,63}}){{0,4}}\.(?:{_TLDS})\b(?:/[^\s<>\"'`]{{0,2000}})?)"
    r"|(?P<amount>[$€£]\s?[0-9][0-9,]{0,20}(?:\.[0-9]{1,2})?"
    r"|(?<![0-9])[0-9][0-9,]{0,20}(?:\.[0-9]{1,2})?\s?(?:dollars|euros|pounds|usd|eur|gbp)\b)"
    r"|(?P<phone>\+?\(?(?<![0-9])[0-9]{1,4}\)?(?:[ .-]\(?[0-9]{2,5}\)?){2,5}(?![0-9]))"
    r"|(?P<number>(?<![0-9])(?<![0-9][.,])[0-9](?:[0-9]|-(?=[0-9])){3,40}(?![0-9]|[.,][0-9]))",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?)]}'\""
_AMOUNT_LEAD = re.compile(r"\bthe\s{1,3}amount\s{1,3}of\s{1,3}$", re.IGNORECASE)

_WORD = re.compile(r"[^\W\d_]{2,}")
_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True, slots=True)
class Item:
    """One fact-like item found in a text."""

    kind: str
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class GuardedReply:
    """A reply after the fact guard."""

    text: str
    replaced: int  # items replaced with a generic phrase
    kinds: tuple[str, ...] = ()  # the kind of each replaced item, in order
    lost_point: bool = False  # little but replaced phrases left: regenerate or fall back


def find_items(text: str) -> list[Item]:
    """Numbers (4+ digits), amounts of money (any size: "$3" is a fact too), phone numbers,
    e-mail addresses and URLs in ``text``."""
    items: list[Item] = []
    for match in _ITEM.finditer(text or ""):
        kind = match.lastgroup or NUMBER
        start, end = match.span()
        value = match.group(0)
        if kind == URL:
            stripped = value.rstrip(_TRAILING)
            end -= len(value) - len(stripped)
            value = stripped
        if kind == PHONE and not _looks_like_phone(value):
            # digits with separators but not a phone: each 4+ digit run is a number
            items += [
                Item(NUMBER, m.group(0), start + m.start(), start + m.end())
                for m in re.finditer(r"(?<![0-9])[0-9]{4,}(?![0-9])", value)
            ]
            continue
        if kind == NUMBER:
            if len(_digits(value)) < 4:
                continue  # "7-14 days"
            start, end = _whole_code(text, start, end)  # "ORD-12345", "1Z999AA1012"
            value = text[start:end]
            if items and start < items[-1].end:
                continue  # two digit runs of one code
        if value:
            items.append(Item(kind, value, start, end))
    return items


def invented_items(
    reply: str,
    conversation: Iterable[str],
    facts: Mapping[str, str] | None = None,
    kinds: Collection[str] | None = None,
) -> list[Item]:
    """The items of ``reply`` (of ``kinds``, default all) that no customer turn in
    ``conversation`` and no value of ``facts`` contains."""
    known = _Known([*conversation, *(v for v in (facts or {}).values() if isinstance(v, str))])
    return [
        item
        for item in find_items(reply)
        if (kinds is None or item.kind in kinds) and not known.contains(item)
    ]


def guard_reply(
    reply: str,
    conversation: Iterable[str],
    facts: Mapping[str, str] | None = None,
    kinds: Collection[str] | None = None,
) -> GuardedReply:
    """Replace every invented item of ``reply`` (of ``kinds``, default all) with the
    generic phrase for its kind.

    ``conversation`` is every customer turn (the new message included); ``facts`` the
    persona's facts. Run it on the reply the customer would see (slots filled)."""
    reply = reply or ""
    invented = invented_items(reply, list(conversation), facts, kinds)
    if not invented:
        return GuardedReply(reply, 0)
    order_talk = talks_about_orders(reply)
    out: list[str] = []
    phrases: list[str] = []
    replaced: list[str] = []
    cursor = 0
    for item in invented:
        if item.start < cursor:
            continue
        start, phrase = _replacement(reply, item, cursor, order_talk)
        out += [reply[cursor:start], phrase]
        phrases.append(phrase)
        replaced.append(item.kind)
        cursor = item.end
    out.append(reply[cursor:])
    text = _SPACES.sub(" ", "".join(out)).strip()
    return GuardedReply(text, len(replaced), tuple(replaced), _lost_point(text, phrases))


def _replacement(text: str, item: Item, floor: int, order_talk: bool) -> tuple[int, str]:
    """Where the replaced span starts (the number's lead words go too) and its phrase."""
    if item.kind == NUMBER:
        fitted = number_phrase(text, item.start, floor, order_talk=order_talk)
        if fitted is not None:
            return fitted
    phrase = PHRASES[item.kind]
    if item.kind == AMOUNT:  # "the amount of $299" -> "the amount", not "the amount of the amount"
        lead = _AMOUNT_LEAD.search(text, floor, item.start)
        if lead is not None:
            return lead.start(), phrase
    return item.start, phrase[0].upper() + phrase[1:] if at_sentence_start(text, item.start) else phrase


def _lost_point(text: str, phrases: list[str]) -> bool:
    """True when, without the inserted phrases, fewer than two words are left."""
    rest = text.lower()
    for phrase in filter(None, phrases):
        rest = rest.replace(phrase.lower(), " ")
    return len(_WORD.findall(rest)) < 2


def _whole_code(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a number to the code it sits in ("ORD-12345"): ASCII letters, digits and
    inner dashes, at most 24 characters each way (a hostile run stays linear)."""

    def part(ch: str) -> bool:
        return ch.isascii() and (ch.isalnum() or ch == "-")

    floor, ceiling = max(0, start - 24), min(len(text), end + 24)
    while start > floor and part(text[start - 1]):
        start -= 1
    while end < ceiling and part(text[end]):
        end += 1
    while start < end and text[start] == "-":
        start += 1
    while end > start and text[end - 1] == "-":
        end -= 1
    return start, end


def _digits(text: str) -> str:
    return "".join(ch for ch in text if "0" <= ch <= "9")


def _looks_like_phone(value: str) -> bool:
    digits = _digits(value)
    if not 7 <= len(digits) <= 15:
        return False
    separators = sum(1 for ch in value if ch in " .-()")
    return value.startswith(("+", "(")) or separators >= 2


def _normal_url(value: str) -> str:
    value = value.lower().rstrip(_TRAILING).rstrip("/")
    value = re.sub(r"^https?://", "", value)
    return value.removeprefix("www.")


class _Known:
    """What the conversation and the persona's facts hold, in comparable forms."""

    def __init__(self, sources: list[str]) -> None:
        self.digits: set[str] = set()
        self.emails: set[str] = set()
        self.urls: set[str] = set()
        for source in sources:
            for item in find_items(source):
                if item.kind == EMAIL:
                    self.emails.add(item.text.lower())
                elif item.kind == URL:
                    self.urls.add(_normal_url(item.text))
                else:
                    self.digits.add(_digits(item.text))
            for run in re.findall(r"[0-9][0-9 .()/-]{0,40}[0-9]", source):  # "+1 (555) 0100"
                self.digits.add(_digits(run))
        self.digits.discard("")

    def contains(self, item: Item) -> bool:
        if item.kind == EMAIL:
            return item.text.lower() in self.emails
        if item.kind == URL:
            url = _normal_url(item.text)
            return any(url == k or url.startswith(k + "/") for k in self.urls)
        digits = _digits(item.text)
        if digits in self.digits:
            return True
        if item.kind == PHONE:  # with or without the country code
            return any(len(k) >= 7 and (k.endswith(digits) or digits.endswith(k)) for k in self.digits)
        return False
