"""IntentClassifier: loading, batching, the out-of-scope rule, and clear errors.

The model is the real MiniLM encoder with a freshly initialised (seeded) head, saved
the way training saves it: no training needed to test inference behaviour."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from core.errors import ModelMissing
from core.intents import OOS_FILE, IntentClassifier, decide
from core.protocols import OUT_OF_SCOPE

LABELS = ["cancel_order", "track_order", "get_refund"]
TEXTS = [
    "I want to cancel my order",
    "where is my parcel?",
    "refund please",
    "can you tell me where the package I ordered last week is right now",
    "hi",
    "what is the capital of peru?",
]


def make_model_folder(folder: Path, labels: Sequence[str], oos: dict | None = None, seed: int = 0) -> Path:
    """Save MiniLM + a seeded random classification head (+ an OOS rule) to ``folder``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.training.intent import default_base

    torch.manual_seed(seed)
    base = default_base()
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
    )
    with torch.no_grad():  # a head with large weights, so the probabilities spread out
        model.classifier.weight.normal_(0, 2.0)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    if oos is not None:
        (folder / OOS_FILE).write_text(json.dumps(oos))
    return folder


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(
        tmp_path_factory.mktemp("plain"), LABELS, {"oos_method": "none", "threshold": 0.0, "max_length": 16}
    )


@pytest.fixture(scope="module")
def with_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    oos = {"oos_method": "class", "threshold": 0.0, "oos_label": OUT_OF_SCOPE, "max_length": 16}
    return make_model_folder(tmp_path_factory.mktemp("cls"), [*LABELS, OUT_OF_SCOPE], oos, seed=1)


def test_decide_threshold_and_class() -> None:
    labels = ["a", "b", OUT_OF_SCOPE]
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.2, 0.5], [0.45, 0.35, 0.2], [0.1, 0.6, 0.3]])
    # no OOS class, no threshold: plain argmax
    plain = decide(probs[:, :2], ["a", "b"], None, 0.0)
    assert [p.label for p in plain] == ["a", "a", "a", "b"]
    # trained OOS class wins in row 1; top_label stays the best in-scope intent
    got = decide(probs, labels, 2, 0.0)
    assert [p.label for p in got] == ["a", OUT_OF_SCOPE, "a", "b"]
    assert got[1].top_label == "a" and got[1].confidence == pytest.approx(0.3)
    # threshold 0.5: rows whose best in-scope probability is below 0.5 are rejected too
    got = decide(probs, labels, 2, 0.5)
    assert [p.label for p in got] == ["a", OUT_OF_SCOPE, OUT_OF_SCOPE, "b"]
    assert [p.top_label for p in got] == ["a", "a", "a", "b"]


def test_loads_and_predicts_in_order(plain: Path) -> None:
    clf = IntentClassifier.from_pretrained(plain, device="cpu")
    assert clf.labels == LABELS
    assert not clf.model.training and clf.device.type == "cpu"
    assert next(clf.model.parameters()).dtype == torch.float32
    batched = clf.predict(TEXTS, batch_size=4)  # sorted by length inside, order restored
    one_by_one = [clf.predict([t], batch_size=1)[0] for t in TEXTS]
    assert len(batched) == len(TEXTS)
    for a, b in zip(batched, one_by_one, strict=True):
        assert a.label == b.label and a.top_label == b.top_label
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
        assert a.label in LABELS and 1 / len(LABELS) <= a.confidence <= 1.0
    assert len({p.label for p in batched}) > 1  # the seeded head does not answer one label for all
    assert clf.predict([]) == []


def test_reload_gives_identical_predictions(plain: Path) -> None:
    first = IntentClassifier.from_pretrained(plain).predict(TEXTS)
    second = IntentClassifier.from_pretrained(plain).predict(TEXTS)
    assert first == second


def test_threshold_from_folder_rejects_low_confidence(plain: Path, tmp_path: Path) -> None:
    base = IntentClassifier.from_pretrained(plain).predict(TEXTS)
    cut = sorted(p.confidence for p in base)[len(base) // 2]  # half the texts fall below
    folder = tmp_path / "m"
    shutil.copytree(plain, folder)
    (folder / OOS_FILE).write_text(
        json.dumps({"oos_method": "threshold", "threshold": cut, "max_length": 16})
    )
    got = IntentClassifier.from_pretrained(folder).predict(TEXTS)
    for b, g in zip(base, got, strict=True):
        assert g.top_label == b.top_label and g.confidence == pytest.approx(b.confidence)
        assert g.label == (OUT_OF_SCOPE if b.confidence < cut else b.label)
    assert any(g.label == OUT_OF_SCOPE for g in got) and any(g.label != OUT_OF_SCOPE for g in got)


def test_trained_oos_class_is_not_a_label(with_class: Path) -> None:
    clf = IntentClassifier.from_pretrained(with_class)
    assert clf.labels == LABELS and OUT_OF_SCOPE not in clf.labels
    probs = clf.probabilities(TEXTS)
    assert probs.shape == (len(TEXTS), len(LABELS) + 1)
    for row, pred in zip(probs, clf.predict(TEXTS), strict=True):
        assert pred.top_label in LABELS
        oos_wins = int(row.argmax()) == len(LABELS)
        assert (pred.label == OUT_OF_SCOPE) == oos_wins
        assert pred.confidence == pytest.approx(float(row[: len(LABELS)].max()), abs=1e-6)


def test_missing_folder_names_folder_and_command(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as err:
        IntentClassifier.from_pretrained(tmp_path / "nope")
    message = str(err.value)
    assert str(tmp_path / "nope") in message and "chatbot train intent" in message and "\n" not in message


@pytest.mark.parametrize("damage", ["config", "weights", "oos_json"])
def test_corrupt_folder_raises_model_missing(plain: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(plain, folder)
    if damage == "config":
        (folder / "config.json").write_text("{not json")
    elif damage == "weights":
        (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    else:
        (folder / OOS_FILE).write_text("[1, 2")
    with pytest.raises(ModelMissing) as err:
        IntentClassifier.from_pretrained(folder)
    assert str(folder) in str(err.value) and "chatbot train intent" in str(err.value)
    assert "\n" not in str(err.value)
