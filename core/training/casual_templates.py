"""Casual requests for each default intent, written for this project as templates.

Bitext's questions come from templates of their own ("I need help to cancel purchase
{{Order Number}}"), so a classifier trained on them alone learns their phrasing rather
than the request. These templates say the same requests the way people type them
(indirect, short, with context), in words of our own; ``core/training/augment.py``
fills the ``{slots}`` and adds typos, casing and wrappers. They are training data only:
``tests/test_augment.py`` checks no filled line equals a line of the hand-written
paraphrase test set.
"""

from __future__ import annotations

# One template a line; {slots} are filled from FILLS.
_TEMPLATES = {
    "cancel_order": """
        i don't want the {item} anymore, cancel it
        please cancel order {num}
        can you stop my order before it goes out
        made a mistake with my order, need it cancelled
        is it possible to cancel something i bought {when}
        how do i cancel the {item} i ordered
        cancel the purchase i made {when}
        i'd like to call off my order
        scrap my last order please
        changed my mind, i don't want order {num} anymore
        i ordered by accident, can you cancel it
        i need to back out of my order for the {item}
        stop order {num} i don't need it
        can i still cancel if it hasn't shipped
        drop my order, found it cheaper somewhere else
        withdraw my purchase of the {item}
        i want to cancel what i just bought
    """,
    "change_order": """
        i need to add a {item} to my order
        can i change the size on my order
        swap the {item} in order {num} for a different colour
        remove the {item} from my order but keep the rest
        i want to change the quantity in my order to {count}
        can i edit my order after paying
        forgot to add something to my order, can you put it in
        update order {num}, i picked the wrong model
        is it possible to modify what i ordered {when}
        i ordered the wrong colour, can you fix that in the order
        take one {item} out of my order please
        replace the {item} in my order with something else
        i'd like to change some items of my order
        add another {item} to the same order
    """,
    "change_shipping_address": """
        i moved, can you change the address on my order
        the delivery address is wrong, please fix it
        i need to update my shipping address
        typo in my street name, can you correct the address
        please send order {num} to a different address
        change where my package is going
        wrong postcode on my delivery, need to change it
        i gave you my old address by mistake
        can i edit the address my stuff ships to
        update the address for my deliveries to my new place
        ship it to my office instead of my home
    """,
    "check_cancellation_fee": """
        do i have to pay anything if i cancel
        is there a penalty for ending my contract early
        how much is the fee to cancel
        what does it cost to terminate my plan
        will you charge me for cancelling
        are there any charges if i quit before the contract ends
        early termination fee?
        is cancelling free or is there a cost
        how much will i be billed for breaking the contract
        what's the exit fee
        any fees for cancelling my subscription early
    """,
    "check_invoice": """
        i want to look at my bill from {when}
        where can i see my invoices
        can i view invoice {num}
        show me my latest bill
        i'd like to check the invoice for my last order
        what did you charge me on my last bill
        where do i find my billing history
        i need to have a look at invoice number {num}
        can i see the bill for the {item}
        how do i see the invoices on my account
        let me check my bill
    """,
    "get_invoice": """
        send me a copy of my invoice
        i need the invoice for order {num} as a pdf
        can i download my bill
        email me the receipt for my purchase
        i need an invoice for my company's expenses
        how do i get a copy of the bill from {when}
        please send me the invoices for this year
        i need a receipt for the {item}
        can you resend the invoice, i lost it
        download invoice {num}
        where can i get a printable invoice
    """,
    "check_payment_methods": """
        can i pay with paypal
        what payment options do you have
        do you take credit cards
        which cards do you accept
        is paying in cash when it arrives an option
        is apple pay accepted
        do you accept bank transfer
        how can i pay for my order
        can i use a gift card to pay
        what ways are there to pay
        can i pay in instalments
        do you accept debit cards
    """,
    "check_refund_policy": """
        what's your refund policy
        can i get my money back if i don't like it
        how many days do i have to return something for a refund
        in which cases do you give refunds
        do you refund sale items
        what are the rules for getting a refund
        is there a money back guarantee
        if the {item} is broken can i get a refund
        do i get a full refund or only store credit
        how does your return and refund policy work
        am i entitled to a refund if it arrives late
    """,
    "complaint": """
        i want to make a complaint
        this is the worst service i've ever had
        i'm really unhappy with how i was treated
        how do i file a formal complaint
        your delivery guy was rude and i want to report it
        i've been waiting for weeks, this is unacceptable
        not happy with your service at all
        i'd like to complain about your staff
        your company has been a nightmare to deal with
        i want to lodge a complaint about my order
        this is ridiculous, nobody helps me
        i'm fed up with your company
    """,
    "review": """
        i want to leave a review for the {item}
        where can i write feedback about my purchase
        i'd like to rate your service
        how do i post a review
        i want to tell you what i thought of the {item}
        can i leave a comment about my experience
        i have some feedback about your shop
        give a rating to a product i bought
        i'd like to share my opinion on your service
        where do i write a product review
        the {item} was great, where can i say so
    """,
    "contact_customer_service": """
        what's your customer service phone number
        how can i contact customer support
        what hours is support open
        is there an email address for customer service
        what's the best way to get hold of your support people
        when can i call you
        do you have a support hotline
        i need to get in touch with customer care
        what's the number for the help desk
        can i write to customer service somewhere
        is support open on weekends
    """,
    "contact_human_agent": """
        i want to talk to a real person
        can i speak to a human
        get me an agent please
        i'd rather talk to someone real than a bot
        please forward me to one of your representatives
        is there a person i can chat with
        transfer me to a live agent
        i need a human not a machine
        let me talk to somebody who works there
        connect me with a staff member
        need a human
        real person please
        can a person help me instead
    """,
    "create_account": """
        how do i make an account
        i'd like to sign up with you
        i'd like to open a {tier} account
        can you help me register
        i'm new here, how do i create a profile
        set up an account for me
        how do i join
        i want to become a member
        where do i sign up for a new account
        can i create an account for my {relative}
        new account please
    """,
    "delete_account": """
        delete my whole account
        i want to close my {tier} account
        how do i remove my profile for good
        please erase all my data and my account
        i don't want an account with you anymore
        can you shut down my account
        i'd like to deactivate my account permanently
        get rid of the account i have with you
        how can i cancel my membership and delete my profile
        remove my login and everything attached to it
        close my account please
    """,
    "edit_account": """
        i need to change my email address on my account
        how do i update my phone number
        my name is spelled wrong on my profile
        can i edit my account details
        i want to change my personal information
        update the details on my profile
        where do i change my username
        i got married and need to update my last name
        change the info on my {tier} account
        how do i modify my profile
        my account has my old phone number
    """,
    "switch_account": """
        i want to upgrade to {tier}
        can i move to the {tier} plan
        downgrade my account to {tier}
        change my membership from {tier} to {tier2}
        how do i switch to a different account type
        i'd like to go from {tier} to {tier2}
        swap my plan for the {tier} one
        can i change my subscription level
        switch me to the cheaper plan
        use my {tier} profile instead
        move my account to {tier}
    """,
    "delivery_options": """
        what shipping options do you have
        do you send orders to {place}
        can i get express delivery
        is next day delivery possible
        can i pick up my order in a store
        how can my order be delivered
        do you deliver internationally
        what delivery methods are there
        is shipping free for big orders
        is delivery to a parcel locker possible
        which couriers do you use
    """,
    "delivery_period": """
        how long does delivery take
        when will my {item} arrive
        how many days until i get my order
        how soon can i expect my package
        what's the delivery time to {place}
        will it arrive before the weekend
        how many days does shipping normally need
        if i order today when does it come
        when should the {item} get here
        how long until it's delivered
        is it going to arrive by {day}
    """,
    "track_order": """
        where is my order at
        where has my package got to
        can you tell me where order {num} is
        track my parcel for me
        my order still hasn't shown up
        what's the status of my order
        has my order shipped yet
        i ordered {when} and nothing has arrived, where is it
        is my {item} on its way
        tracking number for order {num}?
        i want to know where my delivery is
        my package says shipped but where is it
    """,
    "get_refund": """
        i just want my money back
        refund me for the {item}
        i returned the {item}, give me a refund
        can i get a refund for order {num}
        i want a refund, it arrived broken
        please reimburse me
        i'd like to return this and get my money back
        how would i go about asking for a refund
        give me back the {money} i paid
        i was charged for something i never got, i want a refund
        request a refund please
    """,
    "track_refund": """
        where is my refund
        i still haven't got my money back
        when will my refund arrive
        what's the status of my refund
        this refund is taking ages
        you said you'd refund me but nothing came
        did my refund go through yet
        i returned the {item} {when} and still no refund
        how long until the refund shows in my account
        check on my refund of {money}
        the {money} refund hasn't come through
    """,
    "newsletter_subscription": """
        unsubscribe me from your emails
        add me to the newsletter
        stop sending me marketing emails
        how do i subscribe to your newsletter
        take me off your mailing list
        i get too many promo emails, make it stop
        i'd like to get your weekly newsletter
        cancel my newsletter subscription
        put me on the mailing list
        how can i opt out of newsletter emails
        i want news and offers by email
    """,
    "payment_issue": """
        my card was declined
        the payment didn't go through
        you took the payment twice for one order
        i can't pay, the checkout keeps failing
        there's a problem with my payment
        my payment failed but money left my account
        the site won't accept my card
        error when i try to pay
        paypal keeps giving me an error at checkout
        i paid but the order says unpaid
        something went wrong with the payment
    """,
    "place_order": """
        i want to buy a {item}
        how do i order something
        can i order the {item} through you
        i'd like to purchase {count} of these
        help me place an order
        how do i buy from your website
        i want to order a {item}
        can i make an order over chat
        put in an order for a {item} for me
        i'd like to get a {item}, how do i do that
        how does ordering work here
    """,
    "recover_password": """
        i forgot my password
        i can't log in, need to reset my password
        how can i get my password back
        reset my password please
        i'm locked out of my account
        the password reset email never came
        lost my password, help
        how do i change a password i can't remember
        i don't remember my login details
        forgot pw
        my password doesn't work anymore
    """,
    "registration_problems": """
        i can't sign up
        the registration form gives me an error
        i'm trying to register but it doesn't work
        sign up keeps failing
        i never got the confirmation email after registering
        it says my email is already in use when i sign up
        the create account button does nothing
        there's a bug on your sign up page
        i can't finish registering
        registration won't let me continue
        problem creating my account, it keeps erroring
    """,
    "set_up_shipping_address": """
        i want to add a new shipping address
        how do i save a delivery address to my account
        set up a second address for deliveries
        i need to add my work address for shipping
        can i have more than one shipping address
        where do i enter a shipping address
        add a new address to my profile for orders
        i haven't set a delivery address yet, how do i
        save my {relative}'s address as a shipping address
        register a new address for deliveries
        i'd like to set up a default shipping address
    """,
    "greeting": """
        hey hey
        hi, anybody around
        good day
        hello hello
        hey, is somebody there
        hi friend
        morning all
        hello, i have a question
        hey support team
        hi folks
    """,
    "thanks": """
        thanks, that's helpful
        thank you very much
        thanks, you've been great
        cheers, appreciate the help
        many thanks for sorting that out
        thank you for your time
        great help, thanks
        that's perfect, thanks a lot
        thanks so much, really
        you've been very helpful, thank you
    """,
    "goodbye": """
        that's all i needed, bye
        ok that's it for today
        ok bye for today
        gotta go, bye
        thanks, bye
        nothing more, have a good day
        i'm all set, goodbye
        ok talk soon
        see you around
        that will be all
    """,
}

FILLS: dict[str, tuple[str, ...]] = {
    "item": (
        "jacket",
        "headphones",
        "laptop",
        "coffee machine",
        "sofa",
        "lamp",
        "sneakers",
        "phone case",
        "backpack",
        "blender",
        "watch",
        "desk chair",
        "dress",
        "printer",
    ),
    "when": ("yesterday", "this morning", "last week", "two days ago", "on monday", "an hour ago"),
    "count": ("two", "three", "4", "5", "a couple"),
    "tier": ("premium", "pro", "gold", "free", "basic", "business", "standard", "platinum"),
    "tier2": ("premium", "pro", "gold", "free", "basic", "business"),
    "relative": ("son", "daughter", "mum", "dad", "wife", "husband", "friend"),
    "place": ("canada", "germany", "my city", "ireland", "the countryside", "australia"),
    "day": ("friday", "the weekend", "christmas", "my birthday", "tuesday"),
    "money": ("$40", "50 euros", "£25", "$129.99", "30 dollars", "the money"),
}


def templates() -> dict[str, list[str]]:
    """Each intent's templates, one string each."""
    return {
        intent: [line.strip() for line in block.strip().splitlines() if line.strip()]
        for intent, block in _TEMPLATES.items()
    }
