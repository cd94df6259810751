"""History prefix reuse: the KV cache of recent conversations' last prompt and reply.

A conversation's next turn re-sends its recent history, so its prompt starts with the
previous turn's prompt and reply token for token (the prompt format ends a prompt with
``<|bot|>`` and the history writes the reply after it). Keeping those keys/values lets
the next turn encode only the tokens after the longest common prefix.

Entries are keyed by conversation (bot, platform, chat, user) and carry a digest of what
the persona puts into the prompt: a persona change drops the conversation's entry
instead of reusing it. Each generator (one model) has its own cache, so a prefix is
never reused across models. Memory is bounded in tokens (per layer, as the scheduler's
KV budget); the least recently used conversations go first. ``forget`` drops a user's
entries (``history forget``) and refuses to store replies that were being written when
it was called, so nothing of a forgotten user comes back.

Every conversation's prompt also starts with its persona's segment (``<|system|>{style}
<|intent|>``, about 30 tokens of a 46-token first prompt), the same for all customers
of that persona. That segment is kept once per persona (``store_persona``; it holds no
customer's words, so ``forget`` leaves it) and a conversation with nothing cached of its
own starts from it.

Reuse is exact: keys/values of a token depend only on the tokens before it and their
positions, so greedy replies are the same token for token with and without the cache
(tests/test_prefix_cache.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: (1, H, T, D) each
Conversation = tuple[str, str, str, str]  # ConversationKey.parts(): bot, platform, chat, user


@dataclass(frozen=True, slots=True)
class PrefixKey:
    conversation: Conversation
    persona: str  # digest of the persona's prompt-shaping settings (style, generation)


@dataclass(slots=True)
class _Entry:
    persona: str
    tokens: list[int]
    kv: list[LayerKV]


@dataclass
class PrefixStats:
    lookups: int = 0
    hits: int = 0
    reused_tokens: int = 0  # prompt tokens not encoded thanks to the cache
    stored: int = 0
    evicted: int = 0  # entries dropped for room (LRU)
    dropped: int = 0  # entries dropped by a persona change or ``forget``


class PrefixCache:
    """Conversation -> (tokens, their keys/values); LRU within ``budget`` tokens. Thread-safe."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError("the prefix cache budget must be >= 0 tokens")
        self.budget = budget
        self.held = 0  # tokens held, summed over entries
        self.stats = PrefixStats()
        self._entries: OrderedDict[Conversation, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by every forget; see ``epoch`` and ``store``

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, conversation: object) -> bool:
        return conversation in self._entries

    @property
    def epoch(self) -> int:
        """Read when a job starts; ``store`` refuses a job that started before a forget."""
        return self._epoch

    def lookup(self, key: PrefixKey, prompt: list[int]) -> tuple[int, list[LayerKV]]:
        """``(n, kv)``: the first ``n`` prompt tokens are cached, ``kv`` holds them
        ((1, H, n, D) views per layer); ``(0, [])`` on a miss. The conversation's own
        entry or its persona's segment, whichever covers more. At least the prompt's
        last token is left to encode: its logits choose the first reply token."""
        with self._lock:
            self.stats.lookups += 1
            entry = self._entries.get(key.conversation)
            if entry is not None and entry.persona != key.persona:
                self._drop(key.conversation)
                entry = None
            best, n = None, 0
            for name in (key.conversation, persona_key(key.persona)):
                candidate = entry if name == key.conversation else self._entries.get(name)
                if candidate is None:
                    continue
                covered = _common_prefix(candidate.tokens, prompt, len(prompt) - 1)
                if covered > n:
                    best, n = name, covered
            if best is None:
                return 0, []
            self._entries.move_to_end(best)
            self.stats.hits += 1
            self.stats.reused_tokens += n
            return n, [(k[:, :, :n], v[:, :, :n]) for k, v in self._entries[best].kv]

    def has_persona(self, persona: str) -> bool:
        with self._lock:
            return persona_key(persona) in self._entries

    def store_persona(self, persona: str, tokens: list[int], kv: list[LayerKV]) -> bool:
        """Keep a persona's prompt segment (owned (1, H, T, D) copies per layer), which
        every conversation of that persona starts with."""
        return self.store(PrefixKey(persona_key(persona), persona), tokens, kv, since=self._epoch)

    def store(self, key: PrefixKey, tokens: list[int], kv: list[LayerKV], *, since: int) -> bool:
        """Keep ``tokens`` and their keys/values (owned copies, (1, H, T, D) per layer) as
        the conversation's prefix, evicting the least recently used for room. ``since``:
        the epoch when the job started; False (nothing kept) when a forget came after it
        or the entry alone exceeds the budget."""
        size = len(tokens)
        with self._lock:
            if since != self._epoch or size == 0 or size > self.budget:
                return False
            if key.conversation in self._entries:
                self._drop(key.conversation, counted=False)
            while self.held + size > self.budget:
                oldest = next(iter(self._entries))
                self._drop(oldest, counted=False)
                self.stats.evicted += 1
            self._entries[key.conversation] = _Entry(key.persona, list(tokens), kv)
            self.held += size
            self.stats.stored += 1
            return True

    def forget(self, platform: str, user_id: str) -> int:
        """Drop every entry of one user (all bots and chats); returns how many went."""
        return self._forget(lambda c: c[1] == platform and c[3] == user_id)

    def forget_conversation(self, conversation: Conversation) -> int:
        return self._forget(lambda c: c == conversation)

    def clear(self) -> int:
        return self._forget(lambda _c: True)

    def _forget(self, match: Callable[[Conversation], bool]) -> int:
        with self._lock:
            self._epoch += 1  # replies being written now are not stored when they finish
            gone = [c for c in self._entries if match(c)]
            for conversation in gone:
                self._drop(conversation)
            return len(gone)

    def _drop(self, conversation: Conversation, *, counted: bool = True) -> None:
        entry = self._entries.pop(conversation)
        self.held -= len(entry.tokens)
        if counted:
            self.stats.dropped += 1


def persona_key(persona: str) -> Conversation:
    """Where a persona's segment is kept: no platform or user, so ``forget`` never matches."""
    return ("", "", "", f"persona:{persona}")


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y or n >= limit:
            break
        n += 1
    return n
