"""LM evaluation: metric functions on hand-made cases and the report of a tiny model."""

from __future__ import annotations

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from core.errors import ConfigError
from core.evaluation.lm_report import bleu, distinct_n, evaluate_lm, rouge_l
from core.evaluation.loss import reply_loss
from core.generator import Generator
from core.training.data import BITEXT_CSV, Example, stratified_split
from core.training.dialogues import encode_dialogues, load_dialogues
from core.training.lm import train_lm
from tests.test_train_lm import tiny_config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "tiny"
    train_lm(tiny_config(out, max_steps=15, eval_samples=0))
    return out


def test_distinct_n_of_known_strings():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    assert distinct_n(["A b", "a B"], 1) == pytest.approx(2 / 4)  # lower-cased
    assert distinct_n(["one"], 2) == 0.0


def test_rouge_and_bleu_of_identical_and_disjoint_text():
    ref = ["Please log in to your account and open the orders page."]
    assert rouge_l(ref, ref) == pytest.approx(1.0)
    assert bleu(ref, ref) == pytest.approx(100.0)
    assert rouge_l(["zebra quartz"], ref) == 0.0
    assert bleu(["zebra quartz"], ref) < 1.0
    half = rouge_l(["Please log in to your account."], ref)
    assert 0.3 < half < 1.0


def test_report_of_tiny_model(model_dir, tmp_path):
    gen = Generator.from_pretrained(model_dir, device="cpu")
    held = stratified_split(load_dialogues(BITEXT_CSV), 0.01, seed=5)[1][:20]  # type: ignore[arg-type]
    report = evaluate_lm(gen, held, tmp_path / "eval", limit=5, batch_size=2)
    assert report["n_examples"] == 20 and report["n_generated"] == 5 and len(report["samples"]) == 5
    # perplexity is over every example's reply tokens, as in training
    loss = reply_loss(
        gen.model,
        encode_dialogues(gen.tokenizer, held, gen.context_window),
        gen.tokenizer.pad_token_id,
        gen.device,
    )
    assert report["perplexity"] == pytest.approx(math.exp(loss), rel=1e-3)
    assert 1.0 < report["perplexity"] < len(gen.tokenizer)
    assert 0.0 <= report["rouge_l"] <= 1.0 and 0.0 <= report["distinct_2"] <= 1.0
    sheet = (tmp_path / "eval" / "lm-samples.md").read_text()
    assert held[0].text in sheet and held[0].reply.splitlines()[0] in sheet and "**Generated**" in sheet
    assert json.loads((tmp_path / "eval" / "lm-report.json").read_text())["bleu"] == report["bleu"]


def test_plain_examples_are_accepted_and_empty_input_rejected(model_dir, tmp_path):
    gen = Generator.from_pretrained(model_dir, device="cpu")
    examples = [Example(text="cancel my order", intent="cancel_order", response="I can help you cancel it.")]
    report = evaluate_lm(gen, examples, tmp_path / "plain", limit=1)
    assert report["n_generated"] == 1
    with pytest.raises(ConfigError, match="reference"):
        evaluate_lm(gen, [Example(text="hi", intent="x")], tmp_path / "none")


def test_eval_cli(model_dir, tmp_path):
    from bots.commands.lm import eval_lm

    app = typer.Typer()
    app.command("lm")(eval_lm)
    app.command("other")(lambda: None)
    data = tmp_path / "data.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"where is order {i}" if i % 2 else f"cancel order {i}"},
                        {"role": "assistant", "content": "It ships today." if i % 2 else "It is cancelled."},
                    ],
                    "intent": "track_order" if i % 2 else "cancel_order",
                }
            )
            for i in range(8)
        )
    )
    out = tmp_path / "cli-eval"
    result = CliRunner().invoke(
        app,
        [
            "lm",
            str(model_dir),
            str(data),
            "--out",
            str(out),
            "--held-out",
            "0",
            "--limit",
            "2",
            "--max-new-tokens",
            "12",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "perplexity" in result.output and (out / "lm-samples.md").is_file()
    # the reply-quality report, by a judge trained on DATA's responses (none was saved)
    assert "reply quality (judge" in result.output and (model_dir / "judge.joblib").is_file()
    quality = json.loads((out / "reply-quality.json").read_text())
    assert quality["single_turn"]["n"] == quality["multi_turn"]["n"] == 2
    assert "# Reply quality samples" in (out / "reply-quality.md").read_text()
    missing = CliRunner().invoke(app, ["lm", str(tmp_path / "no-model"), str(data)])
    assert (
        missing.exit_code == 2 and "chatbot train lm" in missing.output and "Traceback" not in missing.output
    )
