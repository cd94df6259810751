"""`chatbot models build`: what counts as built, and an interrupted build is redone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bots.commands import build


def _fake_model(folder: Path, arch: str, complete: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [arch]}))
    if complete:
        (folder / "metrics.json").write_text("{}")


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def fake(kind: str, arch: str):
        def train(folder: Path) -> None:
            calls.append(kind)
            _fake_model(folder, arch, complete=True)

        return train

    monkeypatch.setattr(build, "_train_intent", fake("intent", "BertForSequenceClassification"))
    monkeypatch.setattr(build, "_train_lm", fake("lm", "GPT2LMHeadModel"))
    return calls


def test_complete_models_are_kept_and_interrupted_ones_rebuilt(tmp_path: Path, trained: list[str]) -> None:
    _fake_model(tmp_path / build.INTENT_NAME, "BertForSequenceClassification", complete=True)
    _fake_model(tmp_path / build.LM_NAME, "GPT2LMHeadModel", complete=False)  # stopped mid-training
    assert build.build_default_models(tmp_path) == [build.LM_NAME]
    assert trained == ["lm"]
    assert build.build_default_models(tmp_path) == []  # now both are complete


def test_a_folder_of_the_wrong_kind_is_rebuilt_and_force_rebuilds_everything(tmp_path: Path, trained) -> None:
    _fake_model(tmp_path / build.INTENT_NAME, "GPT2LMHeadModel", complete=True)
    assert build.build_default_models(tmp_path) == [build.INTENT_NAME, build.LM_NAME]
    assert build.build_default_models(tmp_path, force=True) == [build.INTENT_NAME, build.LM_NAME]
    assert trained == ["intent", "lm", "intent", "lm"]
