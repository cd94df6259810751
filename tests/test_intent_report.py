"""The evaluation report: scores checked on hand-made cases with known answers, and the
end-to-end report on a real (seeded, untrained-head) MiniLM classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from core.errors import ConfigError
from core.evaluation.intent_report import classification_scores, evaluate_intent, most_confused, reliability
from core.intents import IntentClassifier
from core.protocols import OUT_OF_SCOPE
from core.training.data import Example
from tests.test_intents import LABELS, make_model_folder

GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "b", "a"]


def test_accuracy_macro_f1_per_intent_known_case() -> None:
    s = classification_scores(GOLD, PRED)
    assert s["accuracy"] == pytest.approx(4 / 6)
    # a: P 2/3 R 2/3 F1 2/3; b: P 2/3 R 1 F1 0.8; c: 0 -> macro (2/3 + 0.8 + 0) / 3
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert s["per_intent"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert s["per_intent"]["c"]["f1"] == 0.0 and s["per_intent"]["a"]["support"] == 3


def test_out_of_scope_prediction_only_costs_recall() -> None:
    s = classification_scores(["a", "b"], ["a", OUT_OF_SCOPE])
    assert set(s["per_intent"]) == {"a", "b"}
    assert s["macro_f1"] == pytest.approx(0.5) and s["accuracy"] == 0.5


def test_most_confused_pairs_from_known_matrix() -> None:
    labels = ["a", "b", "c"]
    cm = confusion_matrix(GOLD, PRED, labels=labels)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert most_confused(cm, labels) == [
        {"gold": "a", "predicted": "b", "count": 1},
        {"gold": "c", "predicted": "a", "count": 1},
    ]
    big = np.array([[5, 3, 0], [7, 1, 0], [0, 0, 9]])
    assert most_confused(big, labels, k=1) == [{"gold": "b", "predicted": "a", "count": 7}]


def test_reliability_bins_and_ece() -> None:
    rel = reliability([0.95, 0.95, 0.15, 0.15], [True, True, False, True])
    assert [(b["count"], b["accuracy"]) for b in rel["bins"]] == [(2, 0.5), (2, 1.0)]
    assert rel["bins"][0]["low"] == pytest.approx(0.1) and rel["bins"][1]["high"] == pytest.approx(1.0)
    # 0.5 * |0.5 - 0.15| + 0.5 * |1.0 - 0.95|
    assert rel["ece"] == pytest.approx(0.2)
    assert reliability([1.0], [True])["ece"] == pytest.approx(0.0)  # 1.0 lands in the top bin


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> IntentClassifier:
    folder = make_model_folder(
        tmp_path_factory.mktemp("m"), LABELS, {"oos_method": "threshold", "threshold": 0.5, "max_length": 16}
    )
    return IntentClassifier.from_pretrained(folder)


def test_evaluate_intent_writes_consistent_report(classifier: IntentClassifier, tmp_path: Path) -> None:
    examples = [
        Example("cancel my order now", "cancel_order"),
        Example("I no longer want the order", "cancel_order"),
        Example("where is my package", "track_order"),
        Example("track my order please", "track_order"),
        Example("I want my money back", "get_refund"),
        Example("refund for the broken item", "get_refund"),
        Example("who won the football game yesterday?", OUT_OF_SCOPE),
        Example("give me a recipe for pasta", OUT_OF_SCOPE),
    ]
    report = evaluate_intent(classifier, examples, tmp_path / "r")
    preds = classifier.predict([e.text for e in examples])
    ins = [(p, e) for p, e in zip(preds, examples, strict=True) if e.intent != OUT_OF_SCOPE]
    assert report["n_in_scope"] == 6 and report["n_out_of_scope"] == 2
    assert report["accuracy"] == pytest.approx(sum(p.label == e.intent for p, e in ins) / 6)
    assert report["top_label_accuracy"] == pytest.approx(sum(p.top_label == e.intent for p, e in ins) / 6)
    assert report["oos_recall"] == pytest.approx(sum(p.label == OUT_OF_SCOPE for p in preds[6:]) / 2)
    assert report["rejected_in_scope_rate"] == pytest.approx(sum(p.label == OUT_OF_SCOPE for p, _ in ins) / 6)
    assert np.array(report["confusion_matrix"]).sum() == len(examples)
    assert sum(b["count"] for b in report["calibration"]["bins"]) == 6
    for name in ("confusion.png", "reliability.png"):
        data = (tmp_path / "r" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert json.loads((tmp_path / "r" / "intent-report.json").read_text())["n_examples"] == 8
    md = (tmp_path / "r" / "intent-report.md").read_text()
    assert "oos recall" in md and "Most confused pairs" in md and "| cancel_order |" in md


def test_evaluate_intent_rejects_bad_data(classifier: IntentClassifier, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        evaluate_intent(classifier, [], tmp_path)
    with pytest.raises(ConfigError, match="none of the data's intents"):
        evaluate_intent(classifier, [Example("hello", "greeting")], tmp_path)
