"""The one prompt format of the dialogue LM, shared by training and generation.

A prompt is a run of segments, each opened by a special token::

    <|system|>{persona style}<|intent|>{intent}
    <|user|>{older user turn}<|end|><|bot|>{older bot/agent turn}<|end|>...
    <|user|>{new message}<|end|><|bot|>

and the model writes the reply followed by ``<|end|>``. Training examples are the
same prompt with ``reply + <|end|>`` appended; only those tokens carry a loss.

Segments are tokenized separately and concatenated, so a prompt has the same ids at
training and at generation time, and truncation can drop whole turns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import ConfigError
from core.history import Turn
from core.protocols import GenerationRequest
from core.slots import REFERENCE_NUMBER, mask_like, mask_references

SYSTEM = "<|system|>"
INTENT = "<|intent|>"
USER = "<|user|>"
BOT = "<|bot|>"
END = "<|end|>"
PAD = "<|pad|>"
EOS = "<|endoftext|>"  # the GPT-2 end of text, also bos/unk of a from-scratch tokenizer
ROLE_TOKENS = (SYSTEM, INTENT, USER, BOT, END)
ROLES = {"user": USER, "bot": BOT, "agent": BOT, "assistant": BOT}
IGNORE_INDEX = -100  # label of tokens that carry no loss

# Earlier turns in a prompt are shortened to these many tokens (a bot turn to its first
# sentence, within the cap): Bitext replies run to ~140 tokens, so whole turns would
# leave no room for history beside the reply (docs/lm-model.md, "Fitting the window").
HISTORY_BOT_TOKENS = 24
HISTORY_USER_TOKENS = 48
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")

# Any literal special-token text inside user content is removed, so nobody can type
# "<|bot|>" and forge a turn.
_SPECIAL_TEXT = re.compile(r"<\|(?:system|intent|user|bot|end|pad|endoftext)\|>")


@dataclass(frozen=True, slots=True)
class Dialogue:
    """One training/evaluation example: the context and the reply to learn."""

    text: str  # the user's message the reply answers
    reply: str
    intent: str = ""
    system: str = ""
    history: tuple[Turn, ...] = field(default_factory=tuple)

    def request(self) -> GenerationRequest:
        return GenerationRequest(text=self.text, intent=self.intent, style=self.system, history=self.history)


# "that order", "this purchase", "the same invoice": a message referring to an earlier one.
_POINTING_BACK = re.compile(
    r"\b(?:that|this|the same|the previous|my last)\s+"
    r"(?:order|purchase|invoice|bill|package|parcel|payment|refund)\b",
    re.IGNORECASE,
)


def scope_history(request: GenerationRequest) -> GenerationRequest:
    """The request with only the earlier turns its persona's ``history_scope`` keeps.

    ``topic`` keeps the newest run of turns about the request's intent, back to the
    first turn stored with another intent; a turn with none (an agent's) belongs to the
    topic of the turn before it. A message that points back without a number of its own
    ("cancel that order") also keeps the newest earlier exchange that names one, so the
    reply can name it. A small LM answers what its prompt is about: with 1-3 earlier exchanges
    about other intents, the default LM's replies were on the customer's intent 66% of
    the time against 86% without them (docs/reply-quality.md). ``all`` keeps every turn.
    """
    if request.settings.history_scope == "all" or not request.intent:
        return request
    kept: list[Turn] = []
    pending: list[Turn] = []  # newer turns without an intent: their topic is decided below
    for turn in reversed(request.history):
        if turn.intent and turn.intent != request.intent:
            pending = []
            break
        pending.append(turn)
        if turn.intent:
            kept, pending = kept + pending, []
    scoped = list(reversed(kept + pending))
    if _POINTING_BACK.search(request.text) and not REFERENCE_NUMBER.search(request.text):
        older = list(request.history)[: len(request.history) - len(scoped)]
        for i in range(len(older) - 1, -1, -1):
            if older[i].role == "user" and REFERENCE_NUMBER.search(older[i].text):
                scoped = older[i : i + 2] + scoped  # that message and the reply to it
                break
    return replace(request, history=tuple(scoped))


def mask_request(request: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
    """The request with the customer's reference numbers as ``{{Reference N}}`` (see
    :mod:`core.slots`), and the numbers to put back into the reply."""
    texts, values = mask_references([t.text for t in request.history] + [request.text])
    history = tuple(replace(t, text=x) for t, x in zip(request.history, texts, strict=False))
    return replace(request, text=texts[-1], history=history), values


def mask_dialogue(dialogue: Dialogue) -> Dialogue:
    """A training example masked the way :func:`mask_request` masks prompts: the reply's
    copies of the customer's numbers become the same placeholders."""
    texts, values = mask_references([t.text for t in dialogue.history] + [dialogue.text])
    history = tuple(replace(t, text=x) for t, x in zip(dialogue.history, texts, strict=False))
    return replace(dialogue, text=texts[-1], reply=mask_like(dialogue.reply, values), history=history)


def ensure_special_tokens(tokenizer: Any) -> int:
    """Add the role tokens and a pad token when missing; returns how many were added
    (the caller resizes the model's embeddings when > 0)."""
    added = 0
    missing = [t for t in ROLE_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        added += tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, False
        )  # extend, not replace
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": PAD})
    if tokenizer.eos_token is None:
        added += tokenizer.add_special_tokens({"eos_token": EOS})
    return added


def special_ids(tokenizer: Any) -> dict[str, int]:
    """Token ids of the format's markers (raises ConfigError if the tokenizer lacks one)."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ROLE_TOKENS}
    bad = [t for t, i in ids.items() if i is None or i == tokenizer.unk_token_id]
    if bad:
        raise ConfigError(
            f"tokenizer lacks the prompt tokens {', '.join(bad)}; retrain with `chatbot train lm`"
        )
    return ids


def clean_text(text: str) -> str:
    return _SPECIAL_TEXT.sub("", text or "").strip()


def _encode(tokenizer: Any, text: str) -> list[int]:
    text = clean_text(text)
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def _turn_ids(tokenizer: Any, ids: dict[str, int], turn: Turn) -> list[int]:
    """An earlier turn as the prompt shows it: a bot (or agent) turn by its first sentence,
    a customer's turn by its start, so that several fit beside the reply's room."""
    role = ROLES.get(turn.role, USER)
    if role == BOT:
        text = _FIRST_SENTENCE.split(clean_text(turn.text), maxsplit=1)[0]
        words = _encode(tokenizer, text)[:HISTORY_BOT_TOKENS]
    else:
        words = _encode(tokenizer, turn.text)[:HISTORY_USER_TOKENS]
    return [ids[role], *words, ids[END]]


def build_prompt_ids(
    tokenizer: Any, request: GenerationRequest, context_window: int, max_new_tokens: int
) -> list[int]:
    """The prompt of ``request`` so that ``len(prompt) + max_new_tokens <= context_window``.

    The oldest whole turns go first; when even system + intent + the new message do not
    fit, the system text is shortened (its start kept), then the new message keeps its
    newest (last) tokens, then the intent is dropped.
    """
    budget = context_window - max_new_tokens
    ids = special_ids(tokenizer)
    system = _encode(tokenizer, request.style)
    intent = _encode(tokenizer, request.intent)
    message = _encode(tokenizer, request.text)
    n_history = request.settings.history_turns
    turns = list(request.history)[-n_history:] if n_history > 0 else []
    tail = [ids[END], ids[BOT]]  # closes the user's turn and opens the reply

    def head(sys_ids: list[int], with_intent: bool = True) -> list[int]:
        out = [ids[SYSTEM], *sys_ids] if sys_ids else []
        return out + ([ids[INTENT], *intent] if intent and with_intent else [])

    current = [ids[USER], *message, *tail]
    fixed = head(system)
    if len(fixed) + len(current) <= budget:
        kept: list[list[int]] = []
        room = budget - len(fixed) - len(current)
        for turn in reversed(turns):  # newest first; stop at the first that does not fit
            seg = _turn_ids(tokenizer, ids, turn)
            if len(seg) > room:
                break
            kept.append(seg)
            room -= len(seg)
        return fixed + [t for seg in reversed(kept) for t in seg] + current

    # No history fits. Shorten the system text, then the message (keep its end).
    minimal = 1 + len(tail) + 1  # <|user|> + one message token + <|end|><|bot|>
    if budget < minimal:
        raise ConfigError(
            f"max_new_tokens={max_new_tokens} leaves no room for a prompt in a "
            f"{context_window}-token context; lower max_new_tokens"
        )
    room_for_system = budget - len(head([])) - len(current)
    if room_for_system > 1:
        return head(system[: room_for_system - 1]) + current
    with_intent = len(head([])) + minimal <= budget
    prefix = head([], with_intent)
    keep = budget - len(prefix) - 1 - len(tail)
    return [*prefix, ids[USER], *message[-keep:], *tail]


def build_training_ids(tokenizer: Any, dialogue: Dialogue, max_length: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one example: the prompt (labels -100) + reply + <|end|>.

    The reply is kept whole when it can be: the prompt gives way first (same rules as
    at generation); a reply longer than the window loses its end (and its <|end|>).
    """
    ids = special_ids(tokenizer)
    reply = [*_encode(tokenizer, dialogue.reply), ids[END]]
    min_prompt = min(max_length // 4, 64)
    room = max(max_length - len(reply), min_prompt)
    request = dialogue.request()
    request = GenerationRequest(
        text=request.text,
        intent=request.intent,
        style=request.style,
        history=request.history,
        settings=request.settings.model_copy(update={"history_turns": 200}),
    )
    prompt = build_prompt_ids(tokenizer, request, room, 0)
    reply = reply[: max_length - len(prompt)]
    return prompt + reply, [IGNORE_INDEX] * len(prompt) + reply


def dialogues_from_messages(
    messages: Sequence[dict[str, Any]], *, intent: str = "", system: str = ""
) -> list[Dialogue]:
    """One example per assistant/bot message that answers a user message; the turns
    before that user message are its history. A ``system`` message sets the style."""
    out: list[Dialogue] = []
    turns: list[Turn] = []
    for i, msg in enumerate(messages):
        role = str(msg.get("role", "")).lower()
        content = str(msg.get("content", ""))
        if role == "system":
            system = content
            continue
        if role not in ROLES:
            raise ConfigError(
                f"message {i + 1}: role {role!r} is not one of system, user, assistant, bot, agent"
            )
        if role != "user" and turns and turns[-1].role == "user":
            out.append(
                Dialogue(
                    text=turns[-1].text,
                    reply=content,
                    intent=str(msg.get("intent") or intent),
                    system=system,
                    history=tuple(turns[:-1]),
                )
            )
        turns.append(Turn(role="user" if role == "user" else "bot", text=content, timestamp=0.0))
    return out
