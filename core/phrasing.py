"""Words for a number the bot does not know, chosen to fit the sentence around it.

Two places need them: the fact guard (``core.facts``) replaces a number the model made
up, and slot filling (``core.slots``) replaces a ``{{Order Number}}`` the persona cannot
fill. Both look at the words before the number and replace them together with it:

- "cancel your order number 370795561790" -> "cancel your order";
- "Locate the order with the number 55512" -> "Locate the order" (the order is named
  already, and "the number you gave us" would be wrong when the customer gave none);
- "the number 55512" with nothing before it -> "the number you gave us";
- "quote 4821-9921 when you ask about your order" -> "quote your order number ...".

A determiner before a phrase that brings its own ("the the live chat", "our our
website") is dropped by :func:`merge_determiners`.
"""

from __future__ import annotations

import re

NUMBER_PHRASE = "the number you gave us"
ORDER_NUMBER_PHRASE = "your order number"

# What may stand before an order-like number; it is replaced together with the number.
_NOUN_LEAD = re.compile(
    r"(?:\b(?P<det>your|the|this|that|my|an?)\s+)?\b(?P<noun>order|purchase|invoice|bill|receipt|"
    r"refund|shipment|package|parcel|tracking|reference|account|ticket|case|transaction)"
    r"(?:\s+(?:number|no\.?|num|id))?\s*(?:#|:|n[oº]\.?)?\s*$",
    re.IGNORECASE,
)
_NEEDS_NUMBER = {"tracking", "reference", "account", "ticket", "case", "transaction"}
# "<noun phrase> with the number": the noun phrase already names the thing, so the
# number and its lead words go ("Locate the order with the number 55512" -> "Locate the order").
_WITH_NUMBER = re.compile(
    r"(?<=[^\W\d_])\s*,?\s+(?:(?:with|under|bearing|having)\s+(?:the\s+|a\s+|its\s+)?"
    r"(?:(?:order|purchase|invoice|reference|tracking)\s+)?(?:number|no\.?|id|#|reference|code)"
    r"|labell?ed|marked|called|titled)\s*(?:#|:)?\s*$",
    re.IGNORECASE,
)
_NUMBER_LEAD = re.compile(r"(?:\b(?:the|a)\s+)?(?:\bnumber|#)\s*:?\s*$", re.IGNORECASE)
# After these words a noun phrase fits: "quote your order number when you call".
_SLOT_WORDS = re.compile(
    r"\b(?:with|for|quote|enter|provide|have|labell?ed|using|under|regarding|about|"
    r"mention|include|reference|type|use)\s*$",
    re.IGNORECASE,
)
_ORDER_TALK = re.compile(r"\b(?:order|purchase|parcel|package|shipment)", re.IGNORECASE)
_DETERMINER_END = re.compile(r"\b(?:the|our|your|a|an|this|my)\s+$", re.IGNORECASE)
_DETERMINER_START = re.compile(r"^(?:the|our|your|a|an|this|my)\s", re.IGNORECASE)


def talks_about_orders(text: str) -> bool:
    """Whether ``text`` mentions an order, purchase or parcel ("your order number" fits)."""
    return bool(_ORDER_TALK.search(text))


def number_phrase(
    text: str, start: int, floor: int = 0, *, order_talk: bool = False
) -> tuple[int, str] | None:
    """Words for an unknown number at ``text[start:]``, and where the replaced span starts
    (lead words before the number go with it; never before ``floor``). ``None`` when no
    lead fits: the caller uses its own generic phrase."""
    before = text[max(floor, start - 80) : start]
    offset = start - len(before)
    named = _WITH_NUMBER.search(before)
    if named:
        return offset + named.start(), ""
    noun = _NOUN_LEAD.search(before)
    if noun:
        word = noun.group("noun").lower()
        phrase = f"your {word} number" if word in _NEEDS_NUMBER else f"your {word}"
        return offset + noun.start(), capitalised_like(phrase, noun.group(0))
    lead = _NUMBER_LEAD.search(before)
    if lead:
        return offset + lead.start(), capitalised_like(NUMBER_PHRASE, lead.group(0))
    if order_talk and _SLOT_WORDS.search(before):
        return start, ORDER_NUMBER_PHRASE
    return None


def capitalised_like(phrase: str, original: str) -> str:
    """``phrase`` with a capital first letter when ``original`` starts with one."""
    first = original.lstrip()[:1]
    return phrase[0].upper() + phrase[1:] if phrase and first.isupper() else phrase


def at_sentence_start(text: str, start: int) -> bool:
    previous = text[:start].rstrip()
    return not previous or previous[-1] in ".!?\n"


def merge_determiners(before: str, phrase: str) -> str:
    """``before`` without its last determiner when ``phrase`` starts with one: "through
    the " + "the live chat" reads "through the live chat", "on our " + "our website"
    reads "on our website"."""
    if _DETERMINER_START.match(phrase):
        return _DETERMINER_END.sub("", before)
    return before
