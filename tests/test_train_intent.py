"""Intent training on tiny configurations: every option runs, the loss falls, the saved
model reloads with identical predictions, the OOS rule is chosen as documented, and the
CLI commands turn mistakes into one red line with exit code 2."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from bots.commands.intent import eval_intent
from bots.commands.intent import train_intent as train_cmd
from core.errors import ConfigError, ModelMissing
from core.intents import OOS_FILE, IntentClassifier
from core.protocols import OUT_OF_SCOPE
from core.training.config import IntentTrainConfig, default_intent_config
from core.training.data import BITEXT_CSV, load_examples
from core.training.intent import default_base, train_intent
from core.training.intent_data import split_examples
from core.training.oos_threshold import oos_scores
from core.training.out_of_scope import BITEXT_BANKING_OVERLAP, generate_oos, load_oos

INTENTS = ["cancel_order", "track_order", "get_refund", "create_account"]


def _write_data(folder: Path, per_intent: int, offset: int = 0) -> tuple[Path, Path]:
    """The same tiny Bitext subset as text,label CSV and as JSONL."""
    rows = [e for e in load_examples(BITEXT_CSV) if e.intent in INTENTS]
    picked = [e for i in INTENTS for e in [r for r in rows if r.intent == i][offset : offset + per_intent]]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "data.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([e.text, e.intent] for e in picked)
    (folder / "data.jsonl").write_text(
        "".join(json.dumps({"text": e.text, "label": e.intent}) + "\n" for e in picked)
    )
    return folder / "data.csv", folder / "data.jsonl"


def tiny(tmp: Path, **kw: Any) -> IntentTrainConfig:
    defaults: dict[str, Any] = dict(
        output_dir=tmp / "model",
        max_length=16,
        batch_size=8,
        epochs=1,
        max_steps=3,
        learning_rate=5e-4,
        warmup_ratio=0.0,
        patience=0,
        log_every=1000,
    )
    return IntentTrainConfig(**(defaults | kw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One tiny model (class + threshold OOS from the generated sentences), trained once."""
    tmp = tmp_path_factory.mktemp("intent")
    csv_path, _ = _write_data(tmp / "data", 12)
    cfg = tiny(
        tmp,
        train_file=csv_path,
        epochs=5,
        max_steps=24,
        validation_split=0.25,
        oos_examples="auto",
        oos_method="both",
        limit=36,
        learning_rate=3e-4,
        warmup_ratio=0.1,
        log_every=1,
    )
    return cfg.output_dir, train_intent(cfg)


def test_loss_falls_and_files_are_saved(trained: tuple[Path, dict[str, Any]]) -> None:
    folder, m = trained
    losses = m["loss_history"]
    assert m["steps"] == len(losses) == 24
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.2
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        OOS_FILE,
        "metrics.json",
        "model-card.md",
    ):
        assert (folder / name).is_file(), name
    rule = json.loads((folder / OOS_FILE).read_text())
    assert rule["oos_method"] == "both" and rule["oos_label"] == OUT_OF_SCOPE and rule["max_length"] == 16
    assert rule["threshold"] == m["oos_threshold"] and 0.0 <= rule["threshold"] < 1.0
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["val_macro_f1"] == pytest.approx(m["val_macro_f1"]) and m["n_labels"] == len(INTENTS) + 1
    assert m["n_train"] == 36 + 36 // 8  # limit in-scope rows + limit/8 OOS rows
    assert m["val_oos_recall"] is not None and m["val_macro_f1"] > 0.3
    assert "Out of scope" in (folder / "model-card.md").read_text()


def test_saved_model_reloads_with_identical_predictions(trained: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = trained
    texts = [
        "please cancel my order",
        "where is my parcel",
        "I want a refund",
        "open a new account",
        "tell me a joke about cats",
    ]
    a = IntentClassifier.from_pretrained(folder).predict(texts)
    b = IntentClassifier.from_pretrained(folder).predict(texts)
    assert a == b
    clf = IntentClassifier.from_pretrained(folder)
    assert sorted(clf.labels) == sorted(INTENTS) and clf.oos_index == len(INTENTS)


def test_every_other_option_in_one_tiny_run(tmp_path: Path) -> None:
    """JSONL + separate validation file + cosine + weight decay + frozen layers + class
    weights + gradient accumulation + mixed precision flag + limit + threshold OOS from a file."""
    _, jsonl = _write_data(tmp_path / "train", 8)
    val_csv, _ = _write_data(tmp_path / "val", 3, offset=20)
    oos_file = tmp_path / "oos.txt"
    oos_file.write_text(
        "what is the weather in paris\nplay some jazz\nwho wrote hamlet?\nwhat is 7 times 8\n"
    )
    cfg = tiny(
        tmp_path,
        train_file=jsonl,
        validation_file=val_csv,
        lr_scheduler="cosine",
        weight_decay=0.1,
        freeze_layers=2,
        class_weights=True,
        grad_accum=2,
        mixed_precision=True,
        limit=24,
        batch_size=4,
        max_steps=0,
        oos_examples=str(oos_file),
        oos_method="threshold",
        seed=7,
    )
    m = train_intent(cfg)
    assert m["n_train"] == 24 and m["steps"] == 3  # 24 rows / batch 4 = 6 batches / accumulate 2
    assert m["n_validation"] == 12 + 4  # the separate file + all OOS lines (threshold: none trained)
    assert m["oos_method"] == "threshold" and m["val_oos_recall"] is not None
    rule = json.loads((cfg.output_dir / OOS_FILE).read_text())
    assert rule["oos_label"] is None and rule["oos_method"] == "threshold"
    assert OUT_OF_SCOPE not in json.loads((cfg.output_dir / "config.json").read_text())["label2id"]
    # frozen: embeddings and layers 0-1 equal the base weights; layer 2 moved
    base = load_file(str(Path(default_base()) / "model.safetensors"))
    tuned = load_file(str(cfg.output_dir / "model.safetensors"))
    key = lambda k: next(t for t in tuned if t.endswith(k))  # noqa: E731
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight"):
        b = next(v for k, v in base.items() if k.endswith(name))
        assert torch.equal(b, tuned[key(name)]), name
    b2 = next(v for k, v in base.items() if k.endswith("encoder.layer.2.output.dense.weight"))
    assert not torch.equal(b2, tuned[key("encoder.layer.2.output.dense.weight")])


def test_early_stopping_on_validation_macro_f1(tmp_path: Path) -> None:
    csv_path, _ = _write_data(tmp_path / "d", 6)
    # a learning rate too small to change any prediction: F1 never improves after epoch 1
    m = train_intent(
        tiny(
            tmp_path,
            train_file=csv_path,
            epochs=6,
            max_steps=0,
            learning_rate=1e-12,
            patience=1,
            validation_split=0.34,
            batch_size=16,
        )
    )
    assert m["epochs_run"] == 2 and m["best_epoch"] == 1 and len(m["history"]) == 2


def test_temperature_is_stored_and_applied_at_load(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder, m = trained
    rule = json.loads((folder / OOS_FILE).read_text())
    assert rule["temperature"] == m["temperature"] > 0 and 0 <= m["val_ece"] <= 1
    assert "OOS recall" in rule["rule"] and len(m["oos_curve"]) == 100
    assert IntentClassifier.from_pretrained(folder).temperature == rule["temperature"]
    texts = ["please cancel my order", "where is my parcel", "asdfgh qwerty"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    logp = {}
    for t in (1.0, 3.0):
        (copy / OOS_FILE).write_text(json.dumps(rule | {"temperature": t}))
        logp[t] = IntentClassifier.from_pretrained(copy).probabilities(texts).log()
    # softmax(z / 3): every log-probability gap is a third of the gap at T = 1
    gap = {t: v - v[:, :1] for t, v in logp.items()}
    assert torch.allclose(gap[1.0] / 3, gap[3.0], atol=1e-4)
    assert torch.equal(logp[1.0].argmax(-1), logp[3.0].argmax(-1))
    (copy / OOS_FILE).write_text(json.dumps(rule | {"temperature": -1}))
    with pytest.raises(ModelMissing, match="unreadable"):
        IntentClassifier.from_pretrained(copy)


def test_oos_sources() -> None:
    assert generate_oos(50) == generate_oos(50) and len(set(generate_oos(50))) == 50
    banking = set(json.loads((BITEXT_CSV.parents[1] / "banking77" / "categories.json").read_text()))
    texts = {e.text for e in load_oos("auto", set(list(banking)[:10]), seed=1)}
    bitext = load_examples(BITEXT_CSV)
    overlap = {e.text for e in bitext if e.intent in BITEXT_BANKING_OVERLAP}
    assert texts & {e.text for e in bitext} and not texts & overlap
    assert not {e.text for e in load_oos("auto", {"cancel_order"}, seed=1)} & {e.text for e in bitext}
    with pytest.raises(ConfigError):
        load_oos("/nonexistent/oos.txt", {"a"}, seed=1)


@pytest.mark.parametrize(
    "bad",
    [
        dict(lr_scheduler="step"),
        dict(oos_method="vote"),
        dict(learning_rate=0.0),
        dict(validation_split=1.5),
        dict(max_length=2),
    ],
)
def test_bad_options_are_config_errors(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        train_intent(tiny(tmp_path, **bad))


def test_freezing_more_layers_than_exist(tmp_path: Path) -> None:
    csv_path, _ = _write_data(tmp_path / "d", 4)
    with pytest.raises(ConfigError, match="only 6 layers"):
        train_intent(tiny(tmp_path, train_file=csv_path, freeze_layers=7, validation_split=0.5))


def test_default_config_is_the_bitext_recipe(tmp_path: Path) -> None:
    cfg = default_intent_config(tmp_path / "x")
    cfg.validate()
    assert cfg.train_file == BITEXT_CSV and cfg.output_dir == tmp_path / "x" and cfg.oos_examples == "auto"
    assert cfg.small_talk and cfg.frozen_encoder and cfg.pooling == "mean" and cfg.augment and cfg.casual


def test_frozen_encoder_head_is_saved_as_fitted(tmp_path: Path) -> None:
    """The logistic-regression head on frozen sentence vectors: the encoder keeps the
    base weights, and the saved folder reproduces the validation probabilities the
    temperature and threshold were chosen on."""
    csv_path, _ = _write_data(tmp_path / "d", 10)
    cfg = tiny(
        tmp_path,
        train_file=csv_path,
        pooling="mean",
        frozen_encoder=True,
        validation_split=0.3,
        oos_examples="auto",
        oos_method="both",
        casual=8,
        augment=0.5,
    )
    m = train_intent(cfg)
    assert m["steps"] == 0 and m["history"] == [] and m["frozen_encoder"]["encode_s"] >= 0
    assert m["n_labels"] == len(INTENTS) + 1 and m["val_accuracy"] > 0.5
    clf = IntentClassifier.from_pretrained(cfg.output_dir)
    assert type(clf.model).__name__ == "MeanPoolForSequenceClassification" and clf.model.config.normalize
    base = load_file(str(Path(default_base()) / "model.safetensors"))
    tuned = load_file(str(cfg.output_dir / "model.safetensors"))
    name = "encoder.layer.5.output.dense.weight"
    assert torch.equal(next(v for k, v in base.items() if k.endswith(name)), tuned[f"bert.{name}"])
    # the reloaded model gives the probabilities the OOS rule was chosen on
    _, val = split_examples(cfg)
    probs = clf.probabilities([e.text for e in val])
    gold = [e.intent for e in val]
    again = oos_scores(probs, gold, clf.classes, clf.oos_index, clf.threshold)
    assert again["in_scope_accuracy"] == pytest.approx(m["val_in_scope_accuracy"], abs=1e-6)
    assert again["oos_recall"] == pytest.approx(m["val_oos_recall"], abs=1e-6)
    with pytest.raises(ConfigError, match="needs --pooling mean"):
        tiny(tmp_path, frozen_encoder=True)


def test_small_talk_examples_are_varied_deterministic_and_not_out_of_scope() -> None:
    from core.training.small_talk import SMALL_TALK_INTENTS, generate_small_talk

    chat = generate_small_talk(per_intent=60)
    assert chat == generate_small_talk(per_intent=60) and len({e.text for e in chat}) == 180
    assert {e.intent for e in chat} == set(SMALL_TALK_INTENTS)
    greetings = {e.text.lower().strip("!?.:) 🙂") for e in chat if e.intent == "greeting"}
    assert "hi" in greetings and "hello" in greetings
    # the generated out-of-scope text no longer says hello, so the two cannot disagree
    assert not [t for t in generate_oos() if t.lower().startswith(("hi", "hello", "good morning"))]
    train, val = split_examples(IntentTrainConfig(small_talk=True, validation_split=0.1))
    for intent in SMALL_TALK_INTENTS:
        assert sum(e.intent == intent for e in train) > 80 and sum(e.intent == intent for e in val) > 5
    # "hi, where is my order?" keeps the request's intent
    opened = [
        e
        for e in train
        if e.text.lower().startswith(("hi, ", "hello! ")) and e.intent not in SMALL_TALK_INTENTS
    ]
    assert len(opened) > 50 and {e.intent for e in opened} <= {e.intent for e in load_examples(BITEXT_CSV)}


def _app(fn: Any) -> typer.Typer:
    app = typer.Typer()
    app.command("intent")(fn)
    return app


def test_cli_user_errors_are_one_red_line(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(_app(train_cmd), ["--oos-method", "vote", "--output", str(tmp_path / "m")])
    assert res.exit_code == 2 and "oos_method must be one of" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        _app(train_cmd), ["--data", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "m")]
    )
    assert res.exit_code == 2 and "data file not found" in res.output
    res = runner.invoke(_app(eval_intent), [str(tmp_path / "nomodel"), str(BITEXT_CSV)])
    assert res.exit_code == 2 and "chatbot train intent" in res.output and "Traceback" not in res.output


def test_cli_train_and_eval(trained: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    folder, _ = trained
    csv_path, _ = _write_data(tmp_path / "d", 4, offset=30)
    runner = CliRunner()
    res = runner.invoke(_app(eval_intent), [str(folder), str(csv_path), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "rep" / "intent-report.json").read_text())
    assert report["n_examples"] == 16 and "macro-F1" in res.output
    res = runner.invoke(
        _app(train_cmd),
        [
            "--data",
            str(csv_path),
            "--output",
            str(tmp_path / "cli"),
            "--max-steps",
            "1",
            "--max-length",
            "16",
            "--batch-size",
            "8",
            "--validation-split",
            "0.25",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli" / "config.json").is_file() and "saved" in res.output
