"""The model registry: every model lives in ``models/NAME/`` with its weights, a
``metrics.json`` written by training/evaluation and a human-readable ``model-card.md``.

A persona names the models it uses (``models.intent``, ``models.lm``), so two bots can
run different models in one deployment; each folder is loaded once and shared. A model
that fails to load is not tried again for ``retry_failed_after_s`` (one log line says
so): until then every call raises the same :class:`ModelMissing` at once, and the
engine answers with the persona's ``unavailable`` text.

The dialogue LM loads for the way the engine batches (``generation``): as a
``core.batching.ContinuousGenerator`` (requests join a running batch; dense KV-cache
scheduler on CPU, transformers' paged manager on CUDA) or as the plain
``core.generator.Generator`` (one left-padded ``generate`` per call, for ``waves``);
``int8`` quantises its Linear layers on CPU (``core.quantize``). On CPU every float32
Linear layer left (the classifier's; the LM's without ``int8``) runs through oneDNN with
packed weights (``packed``, :mod:`core.packed_linear`).

On CPU every model is loaded and run on the process's one model thread
(:func:`core.lane.shared_lane`): a classification waits for the end of the current
decoding step instead of computing beside it on the same cores.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.errors import ModelMissing
from core.lane import Lane, shared_lane
from core.protocols import GenerationRequest, IntentModel, IntentPrediction, ReplyModel

log = logging.getLogger(__name__)

M = TypeVar("M", IntentModel, ReplyModel)

METRICS_FILE = "metrics.json"
CARD_FILE = "model-card.md"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    path: Path
    kind: str  # "intent" or "lm"
    metrics: dict[str, Any]


def write_model_card(folder: Path, *, kind: str, title: str, sections: dict[str, Any]) -> Path:
    """Write ``model-card.md``: data, base, options, metrics, date. ``sections`` maps a
    heading to a dict (rendered as a table) or text."""
    lines = [
        f"# {title}",
        "",
        f"- kind: {kind}",
        f"- written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
    ]
    for heading, body in sections.items():
        lines += [f"## {heading}", ""]
        if isinstance(body, dict):
            lines += ["| key | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in body.items()]
        else:
            lines.append(str(body))
        lines.append("")
    path = folder / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_metrics(folder: Path, metrics: dict[str, Any]) -> Path:
    path = folder / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def model_kind(folder: Path) -> str | None:
    """``"intent"`` for a sequence classifier, ``"lm"`` for a causal LM, else None."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        archs = json.loads(config.read_text()).get("architectures") or []
    except (OSError, json.JSONDecodeError):
        return None
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "intent"
    if any(a.endswith(("LMHeadModel", "ForCausalLM")) for a in archs):
        return "lm"
    return None


class ModelRegistry:
    """Finds and loads models by name, once each, thread-safely."""

    def __init__(
        self,
        root: Path,
        device: str | None = None,
        *,
        retry_failed_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        generation: str = "continuous",
        int8: bool = False,
        packed: bool = True,
    ) -> None:
        self.root = Path(root)
        self.device = device
        self.generation = generation  # "continuous" or "waves" (core.engine.EngineConfig)
        self.int8 = int8
        self.packed = packed  # False: the weights as transformers loads them (a baseline to measure)
        self.retry_failed_after_s = retry_failed_after_s
        self._clock = clock
        self._loaded: dict[str, Any] = {}
        self._failed: dict[str, tuple[float, ModelMissing]] = {}  # key -> (retry at, error)
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        candidate = Path(name)
        return candidate if candidate.is_absolute() else self.root / name

    def list(self) -> list[ModelInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            kind = model_kind(folder)
            if kind is None:
                continue
            metrics_path = folder / METRICS_FILE
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
            out.append(ModelInfo(folder.name, folder, kind, metrics))
        return out

    def require(self, name: str, kind: str) -> Path:
        """The folder of model ``name``, or :class:`ModelMissing` saying how to build it."""
        folder = self.path(name)
        how = "`chatbot train intent`" if kind == "intent" else "`chatbot train lm`"
        if not folder.is_dir():
            raise ModelMissing(
                f"{kind} model {name!r} not found at {folder}; build it with {how} "
                f"(or `chatbot models build` for the defaults)"
            )
        found = model_kind(folder)
        if found != kind:
            raise ModelMissing(
                f"{folder} is not a usable {kind} model (config.json missing or of another "
                f"kind); rebuild it with {how} --output {folder}"
            )
        return folder

    def intent_model(self, name: str) -> IntentModel:
        """The loaded intent classifier ``name`` (blocking: call it off the event loop)."""
        from core.intents import IntentClassifier
        from core.packed_linear import pack_linear_layers

        def load(folder: Path, device: str | None = None) -> IntentModel:
            classifier = IntentClassifier.from_pretrained(folder, device=device)
            if self.packed:
                pack_linear_layers(classifier.model)
            lane = self.lane
            return classifier if lane is None else OnLaneIntents(classifier, lane)

        return self._load(name, "intent", load)

    def reply_model(self, name: str) -> ReplyModel:
        """The loaded reply generator ``name``, with best-of-n by the judge saved beside
        it (blocking: call it off the event loop)."""
        return self._load(name, "lm", self._load_lm)

    def _load_lm(self, folder: Path, device: str | None = None) -> ReplyModel:
        from core.best_of import with_judge
        from core.generator import Generator
        from core.packed_linear import pack_linear_layers

        if self.generation == "continuous":
            from core.batching import ContinuousGenerator

            model = ContinuousGenerator.from_pretrained(
                folder, device=device, int8=self.int8, packed=self.packed
            )
            return with_judge(model, folder)  # a dense backend steps on the lane already
        generator = Generator.from_pretrained(folder, device=device)
        if self.int8:
            from core.quantize import quantize_int8

            generator = quantize_int8(generator)
        elif self.packed:
            pack_linear_layers(generator.model)
        lane, judged = self.lane, with_judge(generator, folder)
        return judged if lane is None else OnLaneReplies(judged, lane)

    @property
    def lane(self) -> Lane | None:
        """Where this registry's models load and run: the process's model thread on CPU
        (:mod:`core.lane`); None on a GPU, whose own queue orders the work."""
        from core.device import pick_device

        return shared_lane() if pick_device(self.device).type == "cpu" else None

    def forget(self, platform: str, user_id: str) -> int:
        """Drop what loaded models hold in memory about a user (a continuous generator's
        cached prompts) after ``history forget``; returns how many entries went."""
        with self._lock:
            loaded = list(self._loaded.values())
        dropped = 0
        for model in loaded:
            forget = getattr(model, "forget", None)  # through best-of-n's wrapper
            if callable(forget):
                dropped += int(forget(platform, user_id))
        return dropped

    def close(self) -> None:
        """Stop what loaded models run in the background (a continuous batch)."""
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), {}
        for model in loaded:
            close = getattr(model, "close", None)
            if callable(close):
                close()

    def _load(self, name: str, kind: str, loader: Callable[..., M]) -> M:
        key = f"{kind}:{self.path(name).resolve()}"
        with self._lock:
            if key in self._loaded:
                loaded: M = self._loaded[key]
                return loaded
            failed = self._failed.get(key)
            if failed is not None and self._clock() < failed[0]:
                raise ModelMissing(str(failed[1]))  # already logged when it failed
            try:
                folder = self.require(name, kind)
                try:
                    lane = self.lane  # loading computes too (copies, quantising): on the model thread
                    model = (
                        loader(folder, device=self.device)
                        if lane is None
                        else lane.run(lambda: loader(folder, device=self.device))
                    )
                except Exception as exc:  # corrupt weights, wrong files, ...
                    first_line = str(exc).splitlines()[0] if str(exc) else ""
                    raise ModelMissing(
                        f"{kind} model at {folder} does not load ({exc.__class__.__name__}: "
                        f"{first_line}); rebuild it with `chatbot train {kind}` --output {folder}"
                    ) from exc
            except ModelMissing as exc:
                self._failed[key] = (self._clock() + self.retry_failed_after_s, exc)
                log.error("%s (not retried for %.0f s)", exc, self.retry_failed_after_s)
                raise
            self._failed.pop(key, None)
            self._loaded[key] = model
            return model


class OnLaneIntents:
    """An intent model whose batches run on a :class:`~core.lane.Lane`."""

    def __init__(self, model: IntentModel, lane: Lane) -> None:
        self.model = model
        self.lane = lane
        self.labels = model.labels

    def predict(self, texts: Sequence[str]) -> list[IntentPrediction]:
        return self.lane.run(lambda: self.model.predict(texts))


class OnLaneReplies:
    """A one-call-per-batch reply model (``waves``) whose ``generate`` runs on a lane."""

    def __init__(self, model: ReplyModel, lane: Lane) -> None:
        self.model = model
        self.lane = lane

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        return self.lane.run(lambda: self.model.generate(requests))
