"""An automatic judge of reply quality: is a reply about what the customer asked?

Perplexity, ROUGE-L and BLEU say how close a reply is to one reference; a support team
asks other questions. The judge answers three:

- **on intent**: a response classifier (TF-IDF word and character n-grams + logistic
  regression) trained on the dialogue data's *responses* (response text -> intent)
  reads a generated reply and names the intent it serves; the reply is on intent when
  that is the intent the customer asked about. The classifier's own accuracy on
  held-out responses is kept with it, so a reader knows how far to trust it;
- **invented numbers**: a number of 4+ digits (or a phone number) that no customer turn
  and no persona fact contains (:mod:`core.facts` finds them);
- **unfilled slots**: raw ``{{...}}`` left in the reply, or a generic slot phrase in a
  place where it reads badly ("the number your reference number").

:func:`multi_turn_examples` builds the harder variant of an evaluation set: each
example gets 1-3 unrelated earlier exchanges as history, so a model must answer the
last message, not the conversation.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import ConfigError, ModelMissing
from core.facts import AMOUNT, NUMBER, PHONE, invented_items
from core.history import Turn
from core.prompt import Dialogue
from core.slots import fill_slots

JUDGE_FILE = "judge.joblib"
JUDGE_FORMAT = 1  # bump when the saved object changes shape

# Raw placeholder braces, or a generic slot phrase (core.slots) right after a word that
# already says what it is ("the number your reference number") or after a determiner.
_RAW_SLOT = re.compile(r"\{\{|\}\}")
_AWKWARD_SLOT = re.compile(
    r"\b(?:the|a|an|your|our|my|this|number|no\.|id|#|phone|email|e-mail|address|website|"
    r"site|url|hours|labell?ed|called|named)\s+(?:your|our)\s+(?:[a-z-]+\s+){0,3}?"
    r"(?:number|phone line|email address|website|hours|company)\b",
    re.IGNORECASE,
)
_DOUBLED = re.compile(r"\b(?:the|your|our)\s+(?:the|your|our)\b", re.IGNORECASE)


def judge_text(reply: str) -> str:
    """What the judge reads: the reply with its slots written as a customer sees them
    when the persona has no facts, so training and judged replies look alike."""
    return fill_slots(reply or "", {}).strip()


@dataclass
class ResponseJudge:
    """A trained response classifier and its held-out figures."""

    pipeline: Any  # sklearn Pipeline: TF-IDF features -> LogisticRegression
    labels: list[str]
    held_out_accuracy: float
    n_train: int
    n_held_out: int
    format: int = JUDGE_FORMAT

    def predict(self, replies: Sequence[str]) -> list[str]:
        """The intent each reply serves."""
        if not replies:
            return []
        return [str(x) for x in self.pipeline.predict([judge_text(r) for r in replies])]

    def intent_probability(self, replies: Sequence[str], intent: str) -> list[float]:
        """How sure the judge is that each reply serves ``intent`` (0 for an intent it
        does not know)."""
        if not replies or intent not in self.labels:
            return [0.0] * len(replies)
        column = list(self.pipeline.classes_).index(intent)
        probabilities = self.pipeline.predict_proba([judge_text(r) for r in replies])
        return [float(row[column]) for row in probabilities]

    def save(self, folder: Path | str) -> Path:
        """Write ``judge.joblib`` into ``folder`` (e.g. the LM's model folder)."""
        import joblib

        path = Path(folder) / JUDGE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, folder: Path | str) -> ResponseJudge:
        """Read ``judge.joblib`` from ``folder``; a missing or foreign file is ModelMissing."""
        import joblib

        path = Path(folder) / JUDGE_FILE
        how = "train it with core.evaluation.judge.train_judge and save it there"
        if not path.is_file():
            raise ModelMissing(f"no reply judge at {path}; {how}")
        try:
            judge = joblib.load(path)
        except Exception as exc:  # truncated file, other sklearn version, not a pickle
            raise ModelMissing(f"reply judge {path} does not load ({exc.__class__.__name__}); {how}") from exc
        if not isinstance(judge, cls) or getattr(judge, "format", None) != JUDGE_FORMAT:
            raise ModelMissing(f"{path} is not a reply judge of this version; {how}")
        return judge


def train_judge(examples: Sequence[Dialogue], *, held_out: float = 0.1, seed: int = 13) -> ResponseJudge:
    """Fit the response classifier on ``examples``' replies (label: their intent),
    keeping a stratified ``held_out`` share aside to measure it."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    rows = [(judge_text(d.reply), d.intent) for d in examples if d.reply.strip() and d.intent]
    if len({intent for _, intent in rows}) < 2:
        raise ConfigError("the reply judge needs replies of at least two intents")
    train, test = _stratified(rows, held_out, seed)
    pipeline = Pipeline(
        [
            (
                "features",
                FeatureUnion(
                    [
                        ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
                        (
                            "chars",
                            TfidfVectorizer(
                                analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True
                            ),
                        ),
                    ]
                ),
            ),
            ("classifier", LogisticRegression(C=10.0, max_iter=2000)),
        ]
    )
    pipeline.fit([t for t, _ in train], [i for _, i in train])
    predicted = pipeline.predict([t for t, _ in test]) if test else []
    correct = sum(1 for p, (_, gold) in zip(predicted, test, strict=True) if p == gold)
    return ResponseJudge(
        pipeline=pipeline,
        labels=sorted({i for _, i in rows}),
        held_out_accuracy=correct / len(test) if test else float("nan"),
        n_train=len(train),
        n_held_out=len(test),
    )


def _stratified(
    rows: list[tuple[str, str]], fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    if not 0.0 < fraction < 1.0:
        raise ConfigError("the judge's held-out share must be between 0 and 1")
    by_intent: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_intent.setdefault(row[1], []).append(row)
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for intent in sorted(by_intent):
        group = by_intent[intent][:]
        rng.shuffle(group)
        n = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        test += group[:n]
        train += group[n:]
    return train, test


@dataclass(frozen=True, slots=True)
class ReplyVerdict:
    """What the judge found in one reply."""

    intent: str  # the intent the customer asked about
    judged: str  # the intent the reply serves, by the judge
    invented: tuple[str, ...]  # numbers (4+ digits) nobody wrote
    unfilled_slot: bool

    @property
    def on_intent(self) -> bool:
        return self.judged == self.intent


@dataclass(frozen=True)
class ReplyScores:
    """Shares over a set of replies (0..1) and the verdict on each."""

    n: int
    on_intent: float
    invented_number: float
    unfilled_slot: float
    verdicts: list[ReplyVerdict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "on_intent": round(self.on_intent, 4),
            "invented_number": round(self.invented_number, 4),
            "unfilled_slot": round(self.unfilled_slot, 4),
        }


def has_unfilled_slot(reply: str) -> bool:
    """Raw braces, or a generic slot phrase or a persona fact where it reads badly
    ("the the live chat on our website" from a fact that brings its own article)."""
    return bool(_RAW_SLOT.search(reply) or _AWKWARD_SLOT.search(reply) or _DOUBLED.search(reply))


def score_replies(
    judge: ResponseJudge,
    pairs: Sequence[tuple[str, str]],
    conversations: Sequence[Sequence[str]] | None = None,
    facts: Mapping[str, str] | None = None,
    *,
    fill: bool = True,
) -> ReplyScores:
    """Score ``(intent, reply)`` pairs.

    ``conversations[i]`` are the customer's turns of pair ``i`` (numbers there are not
    invented); ``facts`` the persona's. With ``fill`` the reply is first filled from
    ``facts`` the way the engine fills it (a raw model reply may hold ``{{slots}}``)."""
    if conversations is not None and len(conversations) != len(pairs):
        raise ConfigError("score_replies: one conversation per (intent, reply) pair")
    facts = facts or {}
    shown = [fill_slots(reply, facts) if fill else reply for _, reply in pairs]
    judged = judge.predict([reply for _, reply in pairs])
    verdicts = []
    for k, ((intent, raw), reply, label) in enumerate(zip(pairs, shown, judged, strict=True)):
        said = list(conversations[k]) if conversations is not None else []
        invented = tuple(
            i.text for i in invented_items(reply, said, facts) if i.kind in (NUMBER, AMOUNT, PHONE)
        )
        verdicts.append(ReplyVerdict(intent, label, invented, has_unfilled_slot(reply if fill else raw)))
    n = len(verdicts)
    return ReplyScores(
        n=n,
        on_intent=sum(v.on_intent for v in verdicts) / n if n else 0.0,
        invented_number=sum(bool(v.invented) for v in verdicts) / n if n else 0.0,
        unfilled_slot=sum(v.unfilled_slot for v in verdicts) / n if n else 0.0,
        verdicts=verdicts,
    )


def multi_turn_examples(
    examples: Sequence[Dialogue],
    pool: Sequence[Dialogue] | None = None,
    *,
    min_turns: int = 1,
    max_turns: int = 3,
    seed: int = 13,
) -> list[Dialogue]:
    """``examples`` with ``min_turns``..``max_turns`` earlier exchanges prepended as
    history, drawn from ``pool`` (default: the examples themselves): each of another
    intent, never the example itself nor one with the same message or reply, so the
    right answer is never in the history."""
    if not 1 <= min_turns <= max_turns:
        raise ConfigError("multi-turn history needs 1 <= min_turns <= max_turns")
    pool = list(examples if pool is None else pool)
    rng = random.Random(seed)
    out = []
    for example in examples:
        others = [
            d
            for d in pool
            if d.intent != example.intent
            and d.reply.strip() != example.reply.strip()
            and d.text.strip().lower() != example.text.strip().lower()
        ]
        chosen = rng.sample(others, min(rng.randint(min_turns, max_turns), len(others)))
        history: list[Turn] = list(example.history)
        for earlier in chosen:
            history += [
                Turn(role="user", text=earlier.text, timestamp=0.0, intent=earlier.intent),
                Turn(role="bot", text=earlier.reply, timestamp=0.0, intent=earlier.intent),
            ]
        out.append(replace(example, history=tuple(history)))
    return out
