"""`chatbot train lm`: a tiny from-scratch run, reload, and every training option."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from core.errors import ConfigError
from core.generator import Generator
from core.prompt import IGNORE_INDEX
from core.training.config import CPU_LM_STEPS, GPU_LM_STEPS, PRESETS, LMTrainConfig, default_lm_config
from core.training.data import BITEXT_CSV
from core.training.dialogues import collate, length_grouped_batches, load_dialogues
from core.training.lm import train_lm
from core.training.lm_model import preset_params
from core.training.trainer import total_steps


def tiny_config(output: Path, **overrides) -> LMTrainConfig:
    """A few-second run on a slice of Bitext (shared by the LM test modules)."""
    base = dict(
        output_dir=output,
        preset="tiny",
        limit=160,
        max_length=96,
        vocab_size=600,
        batch_size=8,
        epochs=1.0,
        max_steps=20,
        learning_rate=3e-3,
        warmup_ratio=0.1,
        dropout=0.0,
        eval_samples=4,
        log_every=2,
        validation_split=0.03,
        threads=1,
    )
    base.update(overrides)
    return LMTrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    from bots.commands.lm import train_and_evaluate_lm

    out = tmp_path_factory.mktemp("lm") / "tiny"
    return out, train_and_evaluate_lm(tiny_config(out))


@pytest.fixture(scope="module")
def plain_base(tmp_path_factory) -> Path:
    """A local GPT-2 folder whose tokenizer lacks the prompt tokens (like `gpt2`)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("plain")
    texts = [e.text + " " + e.reply for e in load_dialogues(BITEXT_CSV)[:300]]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=500, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=32, n_layer=2, n_head=2))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_loss_falls_and_files_are_written(trained):
    out, metrics = trained
    assert metrics["last_train_loss"] < metrics["first_train_loss"] - 0.5
    assert metrics["val_loss_curve"][-1][1] < 6.0  # below a uniform guess over ~600 tokens (6.4)
    assert metrics["steps"] == 20 and metrics["params"] > 0
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.json",
        "model-card.md",
        "loss-curve.png",
        "lm_training.json",
        "eval/lm-samples.md",
        "eval/lm-report.json",
        "judge.joblib",
        "eval/reply-quality.json",
        "eval/reply-quality.md",
    ):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["val_perplexity"] == pytest.approx(2.718281828 ** saved["val_loss"], rel=1e-3)
    assert "val_loss" in (out / "model-card.md").read_text()
    assert 0 < metrics["n_train_multi_turn"] < metrics["n_train"]  # the recipe's multi-turn share
    # the judge trained after the LM, and its figures on the held-out replies
    assert 0.0 < saved["judge_held_out_accuracy"] <= 1.0
    quality = json.loads((out / "eval" / "reply-quality.json").read_text())
    assert quality["single_turn"]["n"] == quality["multi_turn"]["n"] == 4
    assert quality["multi_turn"]["earlier_turns_given"] >= 1
    for key in ("on_intent", "on_intent_multi_turn", "invented_number", "unfilled_slot"):
        assert 0.0 <= saved[f"reply_{key}"] <= 1.0, key
    assert saved["reply_invented_number_after_guard"] == 0.0


def test_reloaded_model_gives_identical_greedy_replies(trained):
    out, _ = trained
    report = json.loads((out / "eval" / "lm-report.json").read_text())  # written after training
    gen = Generator.from_pretrained(out, device="cpu")
    from core.evaluation.lm_report import EVAL_SETTINGS
    from core.protocols import GenerationRequest

    reqs = [
        GenerationRequest(text=s["text"], intent=s["intent"], style=s["system"], settings=EVAL_SETTINGS)
        for s in report["samples"]
    ]
    assert gen.generate(reqs) == [s["generated"] for s in report["samples"]]


def test_collate_masks_padding_and_prompt():
    batch = collate(
        [([5, 6, 7, 8], [IGNORE_INDEX, IGNORE_INDEX, 7, 8]), ([5, 9], [IGNORE_INDEX, 9])], pad_id=1
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 9, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, 9, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_length_grouped_batches_cover_everything_once():
    import random

    rng = random.Random(1)
    lengths = [rng.randint(5, 200) for _ in range(100)]
    batches = length_grouped_batches(lengths, 8, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(100))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread < 0.3 * sum(max(lengths) - min(lengths) for _ in batches)  # similar lengths together


def test_presets_and_default_recipe():
    assert preset_params("base", vocab_size=50257, n_positions=1024) == pytest.approx(124_439_808, rel=1e-6)
    assert PRESETS["base"] == (12, 768, 12)
    cfg = default_lm_config("models/x", torch.device("cpu"))
    cfg.validate()
    assert cfg.base == "" and cfg.preset == "small" and cfg.max_length == 384 and cfg.multi_turn == 0.5


def test_the_build_recipe_is_steps_not_seconds_and_follows_the_hardware():
    """Two machines build the same model: the CPU recipe ends after a fixed number of
    steps whatever the clock says; a GPU gets GPT-2 small's shape for more steps."""
    cpu = default_lm_config("models/x", torch.device("cpu"))
    assert cpu.time_budget_s == 0 and cpu.max_steps == CPU_LM_STEPS
    assert total_steps(cpu, 4289) == (269, CPU_LM_STEPS)  # the Bitext training split
    gpu = default_lm_config("models/x", torch.device("cuda"))
    gpu.validate()
    assert gpu.preset == "base" and PRESETS[gpu.preset] == (12, 768, 12)
    assert gpu.time_budget_s == 0 and total_steps(gpu, 4289)[1] == GPU_LM_STEPS > CPU_LM_STEPS
    assert preset_params(gpu.preset, vocab_size=50257, n_positions=1024) > 120e6
    here = default_lm_config("models/x")  # the device training would pick
    assert here.preset == ("base" if torch.cuda.is_available() else "small")


def test_resume_continues_exactly(tmp_path):
    common = dict(lr_scheduler="constant", warmup_ratio=0.0, eval_samples=0, log_every=1, eval_every=100)
    full = train_lm(tiny_config(tmp_path / "full", max_steps=10, **common))
    part = train_lm(tiny_config(tmp_path / "part", max_steps=6, keep_checkpoint=True, **common))
    assert part["steps"] == 6
    assert (tmp_path / "part" / "checkpoints" / "checkpoint-6" / "optimizer.pt").is_file()
    resumed = train_lm(tiny_config(tmp_path / "part", max_steps=10, resume=True, **common))
    assert resumed["steps"] == 10
    assert [s for s, _ in resumed["train_loss_curve"]] == list(range(1, 11))
    assert resumed["val_loss_curve"][-1][1] == pytest.approx(full["val_loss_curve"][-1][1], abs=1e-4)
    assert [v for _, v in resumed["train_loss_curve"]] == pytest.approx(
        [v for _, v in full["train_loss_curve"]], abs=1e-4
    )
    with pytest.raises(ConfigError, match="no checkpoint"):
        train_lm(tiny_config(tmp_path / "nowhere", resume=True))


def test_early_stopping_on_validation_loss(tmp_path):
    # 8 training examples, high learning rate: the model memorises them and the
    # validation loss turns up; patience 2 stops before max_steps.
    metrics = train_lm(
        tiny_config(
            tmp_path / "es",
            limit=8,
            batch_size=4,
            max_steps=300,
            epochs=200.0,
            learning_rate=1e-2,
            eval_every=5,
            patience=2,
            eval_samples=0,
            lr_scheduler="constant",
        )
    )
    assert metrics["stopped_early"] is True
    assert metrics["steps"] < 300
    curve = metrics["val_loss_curve"]
    assert metrics["best_step"] == curve[-3][0]  # the best, then two worse evaluations
    assert curve[-1][1] > curve[-3][1] and curve[-2][1] > curve[-3][1]
    assert metrics["val_loss"] == min(v for _, v in metrics["val_loss_curve"])


def test_time_budget_stops_with_an_evaluated_saved_model(tmp_path):
    # The budget's clock reads 0 at the start and 1, 2, 3 ... at each step's end: a 3.5 s
    # budget is used up at the end of step 4, whatever the machine's speed.
    clock = itertools.count().__next__
    cfg = tiny_config(tmp_path / "tb", max_steps=500, epochs=50.0, time_budget_s=3.5, eval_every=100)
    metrics = train_lm(cfg, clock=lambda: float(clock()))
    assert metrics["stopped_by_time_budget"] is True and metrics["steps"] == 4
    assert metrics["stopped_early"] is False
    assert [s for s, _ in metrics["val_loss_curve"]] == [4]  # the last step is evaluated and kept
    assert (tmp_path / "tb" / "model.safetensors").is_file()


def test_base_with_freezing_accumulation_and_linear_schedule(tmp_path, plain_base):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "frozen"
    metrics = train_lm(
        tiny_config(
            out,
            base=str(plain_base),
            freeze_embeddings=True,
            freeze_layers=1,
            grad_accum=2,
            lr_scheduler="linear",
            max_steps=4,
            eval_samples=0,
        )
    )
    assert metrics["steps"] == 4 and metrics["trainable_params"] < metrics["params"]
    before = AutoModelForCausalLM.from_pretrained(plain_base).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert torch.equal(
        before["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"]
    )
    assert not torch.equal(
        before["transformer.h.1.attn.c_attn.weight"], after["transformer.h.1.attn.c_attn.weight"]
    )
    assert torch.equal(before["transformer.wpe.weight"], after["transformer.wpe.weight"])
    assert (
        after["transformer.wte.weight"].shape[0] == before["transformer.wte.weight"].shape[0] + 6
    )  # prompt tokens
    with pytest.raises(ConfigError, match="only 2 layers"):
        train_lm(tiny_config(tmp_path / "bad", base=str(plain_base), freeze_layers=5))


def test_lora_on_jsonl_conversations(tmp_path, plain_base):
    convs = tmp_path / "convs.jsonl"
    rows = []
    for i in range(12):
        rows.append(
            {
                "intent": "track_order",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"hi, order {i} is late"},
                    {"role": "assistant", "content": "Sorry about that. What is the order number?"},
                    {"role": "user", "content": f"it is {1000 + i}"},
                    {"role": "assistant", "content": f"Order {1000 + i} ships tomorrow."},
                ],
            }
        )
    convs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dialogues = load_dialogues(convs)
    assert len(dialogues) == 24 and len(dialogues[1].history) == 2 and dialogues[1].system == "Be brief."
    out = tmp_path / "lora"
    metrics = train_lm(
        tiny_config(
            out,
            base=str(plain_base),
            train_file=convs,
            limit=0,
            lora_r=4,
            max_steps=6,
            epochs=5.0,
            learning_rate=1e-2,
            validation_split=0.2,
            eval_samples=2,
        )
    )
    assert 0 < metrics["trainable_params"] < metrics["params"] / 2
    assert metrics["last_train_loss"] < metrics["first_train_loss"]
    gen = Generator.from_pretrained(out, device="cpu")  # merged: a plain GPT-2 folder
    assert type(gen.model).__name__ == "GPT2LMHeadModel"
    assert not any("lora" in name for name, _ in gen.model.named_parameters())


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="preset"):
        train_lm(tiny_config(tmp_path / "x", preset="huge"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2"):
        load_dialogues(bad)


def test_cli_reports_user_errors_without_traceback(tmp_path):
    from bots.commands.lm import train_lm as train_cmd

    app = typer.Typer()
    app.command("lm")(train_cmd)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(
        app, ["lm", "--data", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert "data file not found" in result.output and "Traceback" not in result.output


def test_cli_trains_tiny_model(tmp_path):
    from bots.commands.lm import train_lm as train_cmd

    app = typer.Typer()
    app.command("lm")(train_cmd)
    app.command("other")(lambda: None)
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "lm",
            "--output",
            str(out),
            "--preset",
            "tiny",
            "--limit",
            "40",
            "--max-steps",
            "2",
            "--max-length",
            "64",
            "--vocab-size",
            "400",
            "--eval-samples",
            "0",
            "--lr-scheduler",
            "linear",
            "--validation-split",
            "0.02",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "saved" in result.output and (out / "config.json").is_file()
    assert json.loads((out / "lm_training.json").read_text())["max_steps"] == 2


def test_config_is_frozen_and_never_invalid():
    cfg = tiny_config(Path("x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 2.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match="warmup_ratio"):
        dataclasses.replace(cfg, warmup_ratio=1.5)
    with pytest.raises(ConfigError, match="lr_scheduler"):
        LMTrainConfig(lr_scheduler="step")


def test_cli_options_come_from_the_config(tmp_path, monkeypatch):
    """Every config field is an option whose default is the field's; --default starts
    from the build recipe and options given on the command line override it."""
    from bots.commands import lm as command

    seen: list[LMTrainConfig] = []
    result = {"val_loss": 1.0, "val_perplexity": 2.7, "steps": 1, "train_time_s": 0.1}
    monkeypatch.setattr(command, "train_and_evaluate_lm", lambda cfg: seen.append(cfg) or result)
    app = typer.Typer()
    app.command("lm")(command.train_lm)
    app.command("other")(lambda: None)
    runner = CliRunner()
    assert runner.invoke(app, ["lm", "--output", str(tmp_path)]).exit_code == 0
    args = ["lm", "--default", "-o", str(tmp_path), "--lr", "0.01", "--no-mixed-precision"]
    assert runner.invoke(app, args).exit_code == 0
    command_params = typer.main.get_command(app).commands["lm"].params  # type: ignore[attr-defined]
    options = {p.name: p for p in command_params}
    assert seen[0] == LMTrainConfig(output_dir=tmp_path)
    recipe = default_lm_config(tmp_path)
    assert seen[1] == dataclasses.replace(recipe, learning_rate=0.01, mixed_precision=False)
    for f in dataclasses.fields(LMTrainConfig):  # one option per field, its default the field's
        assert options[f.name].default == f.default, f.name
    assert "--data" in options["train_file"].opts and "--lr" in options["learning_rate"].opts
