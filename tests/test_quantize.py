"""`chatbot models quantize NAME`: an int8 copy of the LM and of the intent classifier
that loads (through the registry, by name) and answers, with its quality and speed
measured beside the original's on the same data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bots.cli import app
from core.generator import Generator
from core.intents import IntentClassifier
from core.persona import GenerationSettings
from core.protocols import OUT_OF_SCOPE, GenerationRequest
from core.quantize import MARKER, apply_saved_quantization
from core.registry import ModelRegistry
from core.training.data import BITEXT_CSV, load_examples
from core.training.lm import train_tokenizer
from tests.test_batching import tiny_model
from tests.test_intents import LABELS, make_model_folder

runner = CliRunner()
INT8_LINEAR = torch.ao.nn.quantized.dynamic.Linear
GREEDY = GenerationSettings(do_sample=False, max_new_tokens=12, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def tokenizer():
    examples = load_examples(BITEXT_CSV)[:160]
    return train_tokenizer([t for e in examples for t in (e.text, e.response, e.intent)], 600)


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tokenizer) -> Path:
    root = tmp_path / "models"
    tiny_model(len(tokenizer), seed=5).save_pretrained(root / "lm-tiny")
    tokenizer.save_pretrained(root / "lm-tiny")
    oos = {"oos_method": "class", "threshold": 0.0, "oos_label": OUT_OF_SCOPE, "max_length": 16}
    make_model_folder(root / "intent-tiny", [*LABELS, OUT_OF_SCOPE], oos, seed=2)
    monkeypatch.setenv("MODELS_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    return root


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_quantized_lm_loads_by_name_and_answers_with_figures_beside_the_original(models, tmp_path):
    data = tmp_path / "held-out.csv"
    data.write_text(
        "instruction,intent,response\n"
        "I want to cancel my order,cancel_order,I can help you cancel it.\n"
        "where is my parcel,track_order,Let me check where it is.\n"
        "refund please,get_refund,I will start the refund.\n"
    )
    code, out = cli(
        "models",
        "quantize",
        "lm-tiny",
        "--data",
        str(data),
        "--limit",
        "2",
        "--rounds",
        "1",
        "--max-new-tokens",
        "8",
    )
    assert code == 0, out
    folder = models / "lm-tiny-int8"
    assert (folder / MARKER).is_file() and "int8 speed-up" in out
    metrics = json.loads((folder / "metrics.json").read_text())
    comparison = metrics["comparison"]
    for variant in ("fp32", "int8"):
        assert comparison[variant]["perplexity"] > 1 and 0 <= comparison[variant]["rouge_l"] <= 1
        assert comparison[variant]["tokens_per_s"] > 0
    assert comparison["examples"] == 3 and comparison["int8_speedup"]["tokens_per_s"] > 0

    registry = ModelRegistry(models, device="cpu")
    loaded = registry.reply_model("lm-tiny-int8")  # as the engine gets it
    served = getattr(loaded, "model", loaded)  # under best-of-n's wrapper (core.best_of)
    generator = getattr(served, "generator", served)  # continuous batching runs a Generator's model
    assert isinstance(generator, Generator)
    int8 = [m for m in generator.model.modules() if isinstance(m, INT8_LINEAR)]
    assert len(int8) == 2 * 4 + 1  # every projection of both blocks, and the output head
    try:
        [reply] = loaded.generate([GenerationRequest(text="I need to change my address", settings=GREEDY)])
    finally:
        registry.close()
    assert reply.strip()
    plain = Generator.from_pretrained(models / "lm-tiny", device="cpu")  # the original is untouched
    assert not any(isinstance(m, INT8_LINEAR) for m in plain.model.modules())


def test_quantized_classifier_loads_and_predicts_with_accuracy_and_oos_recall(models, tmp_path):
    data = tmp_path / "intents.csv"
    data.write_text(
        "text,label\nI want to cancel my order,cancel_order\nwhere is my parcel?,track_order\n"
        "refund please,get_refund\nwhat is the capital of peru?,out_of_scope\n"
    )
    code, out = cli("models", "quantize", "intent-tiny", "--data", str(data), "--rounds", "1")
    assert code == 0, out
    comparison = json.loads((models / "intent-tiny-int8" / "metrics.json").read_text())["comparison"]
    for variant in ("fp32", "int8"):
        figures = comparison[variant]
        assert 0 <= figures["accuracy"] <= 1 and 0 <= figures["oos_recall"] <= 1
        assert figures["messages_per_s_batch1"] > 0 and figures["messages_per_s_batch32"] > 0

    classifier = ModelRegistry(models, device="cpu").intent_model("intent-tiny-int8").model  # on the lane
    assert isinstance(classifier, IntentClassifier)
    assert any(isinstance(m, INT8_LINEAR) for m in classifier.model.modules())
    predictions = classifier.predict(["I want to cancel my order", "hi"])
    assert len(predictions) == 2 and all(0 <= p.confidence <= 1 for p in predictions)
    assert {p.top_label for p in predictions} <= set(LABELS)


def test_quantize_refuses_in_one_line(models):
    assert cli("models", "quantize", "lm-tiny", "--no-compare")[0] == 0
    code, out = cli("models", "quantize", "lm-tiny", "--no-compare")
    assert code == 2 and "already exists" in out and "Traceback" not in out
    code, out = cli("models", "quantize", "lm-tiny-int8", "--no-compare", "--output", "again")
    assert code == 2 and "already quantised" in out
    code, out = cli("models", "quantize", "nothing-here")
    assert code == 2 and "no LM or intent model" in out


def test_on_a_gpu_the_marker_is_ignored(models, tokenizer):
    model = tiny_model(len(tokenizer))
    (models / "marked").mkdir()
    (models / "marked" / MARKER).write_text("{}")
    kept = apply_saved_quantization(model, models / "marked", torch.device("cuda"))  # the decision only
    assert kept is model and not any(isinstance(m, INT8_LINEAR) for m in kept.modules())
