"""Filling the ``{{Slot}}`` placeholders of the dialogue data from a persona's facts.

The bundled replies say things like "call {{Customer Support Phone Number}}". A bot's
persona supplies facts for the slots it knows; any other slot is replaced by a generic
phrase so a customer never sees raw braces. Slot names are matched loosely (case,
spaces and punctuation ignored), so "customer_support_phone_number" matches too.

Reference numbers a customer writes (order, invoice, tracking numbers) are swapped for
``{{Reference 1}}``, ``{{Reference 2}}``... in both training data and prompts, and the
reply's placeholders are swapped back: a small model learns to refer to "the number
you gave" instead of copying digits it would get wrong or invent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.phrasing import at_sentence_start, merge_determiners, number_phrase, talks_about_orders

_SLOT = re.compile(r"\{\{\s*([^{}]{1,80}?)\s*\}\}")
_BRACES = re.compile(r"\{\{[^{}]*\}?\}?|\}\}")

# Generic phrases for slots that name something only the business knows.
_GENERIC: dict[str, str] = {
    "customersupportphonenumber": "our customer support phone line",
    "supportphonenumber": "our support phone line",
    "customerservicephonenumber": "our customer service phone line",
    "customersupportemail": "our support email address",
    "customersupportemailaddress": "our support email address",
    "customersupportavailability": "our support hours",
    "customersupporthours": "our support hours",
    "customerservicehours": "our customer service hours",
    "livechat": "live chat",
    "websitename": "our website",
    "websiteurl": "our website",
    "website": "our website",
    "companyname": "our company",
    "numberofdays": "a few",
}

# Slots the data anonymised (order numbers, invoice ids): refer to them, don't invent.
_ANONYMISED = re.compile(
    r"(order|purchase|invoice|bill|account|refund|tracking)\w*(number|id)?anonymi[sz]ed", re.I
)


_NUMBERED = re.compile(r"(order|purchase|invoice|tracking|account|refund)(?:number|id)")

# 4+ characters of digits (dashes inside allowed), not part of a word, an amount
# ("$1499", "12.50") or a placeholder.
REFERENCE_NUMBER = re.compile(r"(?<![\w$€£.,{-])\d[\d-]{2,}\d(?![\w}]|[.,]\d)")
_REFERENCE_SLOT = re.compile(r"\{\{\s*Reference (\d{1,2})\s*\}\}")


def mask_references(texts: list[str]) -> tuple[list[str], list[str]]:
    """Replace each distinct reference number in ``texts`` (a conversation, oldest
    first) by ``{{Reference N}}``, numbered in order of appearance; return the masked
    texts and the numbers (``values[N-1]``)."""
    values: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) not in values:
            values.append(match.group(0))
        return f"{{{{Reference {values.index(match.group(0)) + 1}}}}}"

    return [REFERENCE_NUMBER.sub(replace, t) for t in texts], values


def mask_like(text: str, values: list[str]) -> str:
    """Mask in ``text`` only the numbers already in ``values`` (a reply that repeats
    the customer's numbers); other numbers stay as they are."""

    def replace(match: re.Match[str]) -> str:
        number = match.group(0)
        return f"{{{{Reference {values.index(number) + 1}}}}}" if number in values else number

    return REFERENCE_NUMBER.sub(replace, text)


def unmask_references(text: str, values: list[str]) -> str:
    """Put the customer's numbers back; an unknown ``{{Reference N}}`` is left for
    :func:`fill_slots` (which says "your reference number")."""

    def replace(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return values[n - 1] if 1 <= n <= len(values) else match.group(0)

    return _REFERENCE_SLOT.sub(replace, text)


def normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def fill_slots(text: str, facts: Mapping[str, str]) -> str:
    """Replace every ``{{Slot}}`` in ``text``; strip any stray or half-open braces.

    A number the persona cannot know ("{{Order Number}}", an unknown "{{Reference N}}")
    is worded to fit the sentence (``core.phrasing``: "cancel order {{Order Number}}" ->
    "cancel your order"); a fact or phrase that brings its own determiner replaces the
    one before it ("through the {{Live Chat}}" + "the live chat" -> "through the live chat")."""
    known = {normalise(k): v.strip() for k, v in facts.items() if v and v.strip()}
    order_talk = talks_about_orders(text)
    out: list[str] = []
    cursor = 0
    for match in _SLOT.finditer(text):
        key = normalise(match.group(1))
        start, phrase = match.start(), known.get(key) or _GENERIC.get(key)
        if phrase is None:
            unknown = _unknown_number(key)
            if unknown is None:  # UI labels such as {{Order History}} read well as-is
                phrase = match.group(1).strip().strip("_").replace("_", " ")
            else:
                fitted = number_phrase(text, start, cursor, order_talk=order_talk)
                start, phrase = fitted if fitted is not None else (start, unknown)
        elif at_sentence_start(text, start) and phrase[:1].islower() and key in _GENERIC:
            phrase = phrase[0].upper() + phrase[1:]
        before = merge_determiners(text[cursor:start], phrase)
        out += [before, phrase]
        cursor = match.end()
    out.append(text[cursor:])
    return _BRACES.sub("", "".join(out))


def _unknown_number(key: str) -> str | None:
    """The generic words for a slot that holds a number nobody gave, or None."""
    if re.fullmatch(r"reference\d*", key):
        return "your reference number"
    anonymised = _ANONYMISED.match(key)
    if anonymised:
        return f"your {anonymised.group(1).lower()} number"
    numbered = _NUMBERED.fullmatch(key)
    return f"your {numbered.group(1)} number" if numbered else None
