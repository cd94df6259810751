from __future__ import annotations

import pytest

from core.slots import fill_slots, mask_like, mask_references, unmask_references
from core.text import clean_incoming, split_message


def test_clean_keeps_scripts_and_emoji_and_strips_controls() -> None:
    clean = clean_incoming("  héllo\x00 wörld 👩‍💻 مرحبا 你好\x1b\u200b  ", 100)
    assert clean.text == "héllo wörld 👩‍💻 مرحبا 你好"
    assert not clean.truncated and not clean.empty


def test_clean_truncates_at_the_limit() -> None:
    clean = clean_incoming("x" * 50, 10)
    assert clean.text == "x" * 10 and clean.truncated and clean.original_length == 50


def test_clean_does_not_split_a_combining_mark() -> None:
    text = "a" * 9 + "e\u0301\u0301"  # NFC cannot fully compose the double accent
    clean = clean_incoming(text, 10)  # NFC: 9 x "a", "é", then a lone U+0301 at index 10
    assert clean.truncated
    assert clean.text == "a" * 9  # the cut backs off to before "é", never keeps a bare mark


@pytest.mark.parametrize("limit", [50, 200, 2000])
def test_split_respects_limit_and_never_cuts_words(limit: int) -> None:
    words = [f"word{i}" for i in range(800)]
    text = " ".join(words[:300]) + ".\n\n" + " ".join(words[300:])
    chunks = split_message(text, limit)
    assert all(len(c) <= limit for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_split_prefers_paragraphs() -> None:
    text = ("First paragraph. " * 5).strip() + "\n\n" + ("Second one here. " * 5).strip()
    chunks = split_message(text, 120)
    assert chunks[0].startswith("First") and chunks[1].startswith("Second")


def test_split_closes_and_reopens_code_fences() -> None:
    code = "```\n" + "\n".join(f"line {i}" for i in range(60)) + "\n```"
    chunks = split_message(code, 100)
    assert len(chunks) > 1
    assert all(c.count("```") % 2 == 0 for c in chunks)


def test_slots_use_facts_and_never_show_braces() -> None:
    text = (
        "Call {{Customer Support Phone Number}}, visit {{Website Name}}, open {{Order History}}, "
        "order {{Order Number Anonymized}} {{Broken"
    )
    filled = fill_slots(text, {"customer_support_phone_number": "+44 20 0000"})
    assert "+44 20 0000" in filled and "our website" in filled and "Order History" in filled
    assert filled.endswith(", open Order History, your order ")  # "order your order number" read badly
    assert "{" not in filled and "}" not in filled


@pytest.mark.parametrize(
    ("raw", "facts", "shown"),
    [
        # an unknown number reads as what it is, fitted to the words before it
        (
            "I see you want to cancel order {{Order Number Anonymized}}.",
            {},
            "I see you want to cancel your order.",
        ),
        ("Look for the order with the number {{Reference 2}}.", {}, "Look for the order."),
        (
            "Please have {{Order Number}} ready when you call about the order.",
            {},
            "Please have your order number ready when you call about the order.",
        ),
        ("Open the invoice {{Reference 1}} now.", {}, "Open your invoice now."),
        # a fact or phrase with its own determiner takes the place of the one before it
        ("Use the {{Live Chat}} feature.", {"Live Chat": "the live chat"}, "Use the live chat feature."),
        ("Visit our {{Website URL}} today.", {}, "Visit our website today."),
        ("{{Website Name}} has a help page.", {}, "Our website has a help page."),
        (
            "Call {{Customer Support Phone Number}}.",
            {"Customer Support Phone Number": "+1 555 0100"},
            "Call +1 555 0100.",
        ),
    ],
)
def test_unknown_slots_read_naturally(raw: str, facts: dict[str, str], shown: str) -> None:
    assert fill_slots(raw, facts) == shown


def test_reference_numbers_become_numbered_placeholders_and_come_back() -> None:
    texts, values = mask_references(["my order 00123842 is late", "bill #37777 and order 00123842 again"])
    assert texts == [
        "my order {{Reference 1}} is late",
        "bill #{{Reference 2}} and order {{Reference 1}} again",
    ]
    assert values == ["00123842", "37777"]
    # amounts, decimals, short numbers, words with digits and placeholders stay as they are
    kept = "refund $1499, 12.50 EUR, 3 items, model X2000, {{Order Number}} 12.3456"
    assert mask_references([kept]) == ([kept], [])
    assert mask_like("your order 00123842, not 55555", values) == "your order {{Reference 1}}, not 55555"
    assert (
        unmask_references("order {{Reference 1}}, bill {{ Reference 2 }}", values)
        == "order 00123842, bill 37777"
    )
    # a placeholder the customer never filled reads as a phrase, never as raw braces
    assert fill_slots(unmask_references("see {{Reference 3}}", values), {}) == "see your reference number"
