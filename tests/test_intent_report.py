"""The evaluation report: every figure checked against numbers worked out by hand for a
small case, and the report files of a real (seeded, untrained-head) MiniLM classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from core.errors import ConfigError
from core.evaluation.intent_report import classification_scores, evaluate_intent, most_confused, reliability
from core.intents import IntentClassifier
from core.protocols import OUT_OF_SCOPE, IntentPrediction
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


class FixedPredictions:
    """An intent model whose answer to each text is written in the test."""

    def __init__(self, labels: list[str], answers: dict[str, IntentPrediction]) -> None:
        self.labels, self.answers = labels, answers

    def predict(self, texts: list[str], batch_size: int = 32) -> list[IntentPrediction]:
        return [self.answers[t] for t in texts]


# text: (gold, the model's answer). Six in scope (a, a, a, a, b, b), two out of scope.
CASE = {
    "1": ("a", IntentPrediction("a", 0.95, "a")),
    "2": ("a", IntentPrediction("a", 0.85, "a")),
    "3": ("a", IntentPrediction("b", 0.65, "b")),
    "4": ("a", IntentPrediction(OUT_OF_SCOPE, 0.35, "a")),  # rejected, though the top label is right
    "5": ("b", IntentPrediction("b", 0.92, "b")),
    "6": ("b", IntentPrediction("a", 0.55, "a")),
    "7": (OUT_OF_SCOPE, IntentPrediction(OUT_OF_SCOPE, 0.20, "b")),
    "8": (OUT_OF_SCOPE, IntentPrediction("a", 0.75, "a")),  # missed
}


def test_report_figures_worked_out_by_hand(tmp_path: Path) -> None:
    model = FixedPredictions(["a", "b"], {t: p for t, (_, p) in CASE.items()})
    report = evaluate_intent(model, [Example(t, g) for t, (g, _) in CASE.items()], tmp_path / "r")
    assert (report["n_examples"], report["n_in_scope"], report["n_out_of_scope"]) == (8, 6, 2)
    assert report["accuracy"] == pytest.approx(3 / 6)  # rows 1, 2, 5
    assert report["top_label_accuracy"] == pytest.approx(4 / 6)  # rows 1, 2, 4, 5
    assert report["rejected_in_scope_rate"] == pytest.approx(1 / 6)  # row 4
    assert report["oos_recall"] == pytest.approx(1 / 2)  # row 7 of 7, 8
    assert report["oos_precision"] == pytest.approx(1 / 2)  # flagged: rows 4, 7
    assert report["overall_accuracy"] == pytest.approx(4 / 8)  # rows 1, 2, 5, 7
    # a: predicted a on rows 1, 2, 6 (P 2/3), gold a on rows 1-4 (R 2/4), F1 4/7;
    # b: predicted b on rows 3, 5 (P 1/2), gold b on rows 5, 6 (R 1/2), F1 1/2
    assert report["per_intent"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "support": 4}
    )
    assert report["per_intent"]["b"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert report["macro_f1"] == pytest.approx((4 / 7 + 1 / 2) / 2)
    assert report["confusion_labels"] == ["a", "b", OUT_OF_SCOPE]
    assert report["confusion_matrix"] == [[2, 1, 1], [1, 1, 0], [1, 0, 1]]
    assert [(c["gold"], c["predicted"]) for c in report["most_confused"]] == [
        ("a", "b"),
        ("a", OUT_OF_SCOPE),
        ("b", "a"),
        (OUT_OF_SCOPE, "a"),
    ]
    # in-scope confidences by bin: 0.35 right | 0.55 wrong | 0.65 wrong | 0.85 right | 0.95, 0.92 right
    bins = report["calibration"]["bins"]
    assert [b["low"] for b in bins] == pytest.approx([0.3, 0.5, 0.6, 0.8, 0.9])
    assert [(b["count"], b["accuracy"]) for b in bins] == [(1, 1.0), (1, 0.0), (1, 0.0), (1, 1.0), (2, 1.0)]
    # (0.65 + 0.55 + 0.65 + 0.15 + 2 * 0.065) / 6
    assert report["calibration"]["ece"] == pytest.approx(2.13 / 6)
    md = (tmp_path / "r" / "intent-report.md").read_text()
    assert "- accuracy: 0.5000" in md and "- oos recall: 0.5000" in md and "| a | b | 1 |" in md
    # no probabilities to sweep a threshold over: no trade-off curve
    assert "oos_curve" not in report and not (tmp_path / "r" / "oos-tradeoff.png").exists()


def test_report_files_of_a_real_classifier(classifier: IntentClassifier, tmp_path: Path) -> None:
    examples = [
        Example("cancel my order now", "cancel_order"),
        Example("where is my package", "track_order"),
        Example("I want my money back", "get_refund"),
        Example("give me a recipe for pasta", OUT_OF_SCOPE),
    ]
    validation = [
        {"threshold": t / 100, "in_scope_accuracy": 1 - t / 200, "oos_recall": t / 100} for t in range(100)
    ]
    report = evaluate_intent(classifier, examples, tmp_path / "r", validation_curve=validation)
    assert report["n_in_scope"] == 3 and report["n_out_of_scope"] == 1
    assert np.array(report["confusion_matrix"]).sum() == len(examples)
    for name in ("confusion.png", "reliability.png"):
        data = (tmp_path / "r" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert json.loads((tmp_path / "r" / "intent-report.json").read_text())["n_examples"] == 4
    md = (tmp_path / "r" / "intent-report.md").read_text()
    assert "oos recall" in md and "Most confused pairs" in md and "| cancel_order |" in md
    # the trade-off curve: one point per threshold, and at the model's own threshold
    # (0.5) exactly the report's in-scope accuracy and OOS recall
    curve = report["oos_curve"]
    assert len(curve) == 100 and "oos-tradeoff.png" in md
    at = next(p for p in curve if p["threshold"] == 0.5)
    assert at["in_scope_accuracy"] == pytest.approx(report["accuracy"])
    assert at["oos_recall"] == pytest.approx(report["oos_recall"])
    assert curve[0]["oos_recall"] == 0.0  # no OOS class: at t = 0 nothing is rejected
    assert (tmp_path / "r" / "oos-tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_intent_rejects_bad_data(classifier: IntentClassifier, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        evaluate_intent(classifier, [], tmp_path)
    with pytest.raises(ConfigError, match="none of the data's intents"):
        evaluate_intent(classifier, [Example("hello", "greeting")], tmp_path)
