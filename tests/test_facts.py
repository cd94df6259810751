"""The fact guard keeps what the customer or the persona said and replaces what the
model made up."""

from __future__ import annotations

import random

import pytest

from core.facts import EMAIL, NUMBER, PHONE, URL, find_items, guard_reply, invented_items

FACTS = {
    "Customer Support Phone Number": "+1 555 010 0199",
    "Customer Support Email": "help@shop.example.com",
    "Website URL": "https://shop.example.com",
}


def test_an_invented_order_number_is_replaced_in_words_that_read_naturally() -> None:
    reply = "I understand that you would like to cancel your order number 370795561790. Here is how."
    out = guard_reply(reply, ["I want to cancel my order"], FACTS)
    assert out.text == "I understand that you would like to cancel your order. Here is how."
    assert (out.replaced, out.kinds, out.lost_point) == (1, (NUMBER,), False)


def test_a_number_the_customer_wrote_is_kept_and_another_is_not() -> None:
    conversation = ["where is my order 12345?", "and can I still cancel it"]
    kept = guard_reply("Order 12345 has shipped and is on its way.", conversation)
    assert (kept.text, kept.replaced) == ("Order 12345 has shipped and is on its way.", 0)
    swapped = guard_reply("Order 99999 has shipped and is on its way.", conversation)
    assert swapped.text == "Your order has shipped and is on its way."
    assert swapped.replaced == 1


def test_a_near_copy_of_the_customers_number_is_invented() -> None:
    """Bitext answers "3707955617" with "370795561790"; the model learned that number."""
    reply = "I understand that you would like to cancel purchase 370795561790."
    out = guard_reply(reply, ["cancel purchase 3707955617"])
    assert out.text == "I understand that you would like to cancel your purchase."


def test_a_bare_invented_number_gets_the_generic_phrase() -> None:
    out = guard_reply("Look for the order with the number 55512. Then click Cancel.", ["cancel it"])
    assert out.text == "Look for the order. Then click Cancel."  # the order is named already
    labelled = guard_reply("Find the purchase labeled 55512, then open it.", ["cancel it"])
    assert labelled.text == "Find the purchase, then open it."
    bare = guard_reply("Keep the number 55512 for later.", ["cancel it"])
    assert bare.text == "Keep the number you gave us for later."
    hint = guard_reply("Please have 4821-9921 ready when you ask about your order.", ["help"])
    assert hint.text == "Please have your order number ready when you ask about your order."


def test_persona_facts_are_kept_even_written_differently() -> None:
    reply = (
        "Call us at +1 (555) 010-0199 or 555 010 0199, write to Help@Shop.example.com, "
        "or visit https://shop.example.com/returns."
    )
    out = guard_reply(reply, ["how do I reach you"], FACTS)
    assert (out.text, out.replaced) == (reply, 0)


def test_invented_phone_email_and_url_become_their_phrases() -> None:
    reply = "Call us at +44 20 7946 0958 or email support@acme.io or see www.acme.io/help."
    out = guard_reply(reply, ["how do I reach you"], FACTS)
    assert out.text == (
        "Call us at our support phone line or email our support email address or see our website."
    )
    assert out.kinds == (PHONE, EMAIL, URL)
    assert out.lost_point is False


def test_the_customers_own_email_and_link_are_kept() -> None:
    conversation = [
        "my email is jo.doe+shop@mail.example.org",
        "the link http://tracker.example.net/x1 is dead",
    ]
    reply = "We will write to jo.doe+shop@mail.example.org about http://tracker.example.net/x1."
    assert invented_items(reply, conversation) == []


def test_a_reply_that_was_only_an_invented_item_lost_its_point() -> None:
    out = guard_reply("370795561790", ["cancel my order"])
    assert out.replaced == 1 and out.lost_point is True
    call = guard_reply("Call +1 555 123 4567.", ["phone?"])
    assert call.text == "Call our support phone line." and call.lost_point is True


def test_amounts_and_short_numbers() -> None:
    items = find_items("Refund of $1,499.00 or 1200 dollars, $12.50 fee, ready in 3-5 or 7-14 days, 24/7.")
    assert [(i.kind, i.text) for i in items] == [
        ("amount", "$1,499.00"),
        ("amount", "1200 dollars"),
        ("amount", "$12.50"),
    ]


def test_small_invented_amounts_are_replaced() -> None:
    # the default LM wrote "a refund of $299" to "I expect a compensation of $3"
    said = ["I expect a compensation of $3, was it processed?"]
    invented = guard_reply("I understand you are unsure about the amount of $299. A fee of $5 applies.", said)
    assert invented.text == "I understand you are unsure about the amount. A fee of the amount applies."
    assert invented.kinds == ("amount", "amount")
    assert guard_reply("Your refund of $3 is on its way.", said).replaced == 0
    assert guard_reply("A fee of $12.50 applies.", ["fee?"], {"Cancellation fee": "$12.50"}).replaced == 0


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "{{Order Number}} }} {{",
        "١٢٣٤٥ 𝟏𝟐𝟑𝟒𝟓 １２３４５ — ✉️ @@ http:// www. .com",
        "🙂" * 500 + "12345" + "\u202e\u0000",
        "a@" * 5000 + "b.com",
        "1-" * 10000,
        "+" + " 1" * 5000,
        "https://" + "a." * 3000 + "com/" + "%" * 3000,
        "ORD-" * 3000 + "123456",
    ],
)
def test_hostile_and_unicode_input_never_raises(reply: str) -> None:
    out = guard_reply(reply, [reply[:100], "Ünïcødé 12345"], {"bad": "", "weird": "☎ +1 555"})
    assert isinstance(out.text, str) and out.replaced >= 0


def test_random_garbage_never_raises() -> None:
    rng = random.Random(7)
    alphabet = "0123456789 +-().@/:#$€abcXYZ\n\t{}ßø🙂"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        out = guard_reply(text, [text[::-1]])
        assert out.replaced == len(out.kinds)
