"""The model lane: the CPU models of a process take turns on one thread, a classifier
call running between two decoding steps of the continuous batch, never beside them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.batching import ContinuousGenerator, DenseBackend, Job
from core.generator import Generator
from core.lane import Lane, shared_lane
from core.persona import GenerationSettings
from core.protocols import OUT_OF_SCOPE, GenerationRequest
from core.registry import ModelRegistry, OnLaneIntents, OnLaneReplies
from tests.test_batching import NO_STOP, prompts, reference, tiny_model
from tests.test_intents import LABELS, make_model_folder
from tests.test_quantize import tokenizer  # noqa: F401  (module fixture)

GREEDY = GenerationSettings(do_sample=False, max_new_tokens=10, repetition_penalty=1.0)


class Counter:
    """A stepper with work until told to stop, recording which thread steps it."""

    def __init__(self) -> None:
        self.steps = 0
        self.threads: set[str] = set()
        self.stop = threading.Event()
        self.started = threading.Event()

    def has_work(self) -> bool:
        return not self.stop.is_set()

    def step(self) -> None:
        self.steps += 1
        self.threads.add(threading.current_thread().name)
        if self.steps == 3:
            self.started.set()


def test_calls_run_on_the_lane_and_bring_back_results_and_errors() -> None:
    lane = Lane("test-lane")
    try:
        assert lane.run(threading.current_thread).name == "test-lane"
        assert lane.run(lambda: lane.run(lambda: 7)) == 7  # on the lane already: no self-wait
        with pytest.raises(ZeroDivisionError):
            lane.run(lambda: 1 // 0)
        assert lane.run(lambda: "still serving") == "still serving"
    finally:
        lane.close()
    with pytest.raises(RuntimeError, match="closed"):
        lane.submit(lambda: None)


def test_a_call_runs_between_the_steps_of_a_stepper_that_never_idles() -> None:
    lane = Lane("test-lane")
    counter = Counter()
    lane.attach(counter)
    try:
        assert counter.started.wait(5)
        seen_at = lane.submit(lambda: counter.steps).result(timeout=5)  # would hang if calls waited for idle
        after = lane.submit(lambda: counter.steps).result(timeout=5)
        assert 3 <= seen_at < after  # the stepper kept stepping around the calls
        assert counter.threads == {"test-lane"}
    finally:
        counter.stop.set()
        lane.close()


def test_a_stepper_that_raises_does_not_stop_the_lane() -> None:
    class Broken:
        def __init__(self) -> None:
            self.left = 1

        def has_work(self) -> bool:
            return self.left > 0

        def step(self) -> None:
            self.left -= 1
            raise RuntimeError("boom")

    lane = Lane("test-lane")
    try:
        lane.attach(Broken())
        assert lane.run(lambda: 41 + 1) == 42
    finally:
        lane.close()


def test_two_backends_share_a_lane_and_write_their_own_greedy_tokens(model_pair) -> None:
    first, second = model_pair
    lane = Lane("test-lane")
    backends = [DenseBackend(first, lane=lane), DenseBackend(second, lane=lane)]
    done: dict[tuple[int, int], list[int]] = {}
    finished = threading.Event()
    ps = prompts(first.config.vocab_size, (6, 17, 3))
    try:
        for b, backend in enumerate(backends):
            for i, prompt in enumerate(ps):

                def record(c, key=(b, i)) -> None:
                    done[key] = c.tokens
                    if len(done) == 2 * len(ps):
                        finished.set()

                backend.submit(Job(prompt, 9, NO_STOP, on_finish=record))
        assert finished.wait(30)
    finally:
        for backend in backends:
            backend.close()
        lane.close()
    for b, model in enumerate(model_pair):
        assert [done[(b, i)] for i in range(len(ps))] == [reference(model, p, 9) for p in ps]


@pytest.fixture(scope="module")
def model_pair(tokenizer):  # noqa: F811
    return tiny_model(len(tokenizer), seed=3), tiny_model(len(tokenizer), seed=4)


def lm_and_intent_folders(root: Path, tokenizer) -> None:  # noqa: F811
    tiny_model(len(tokenizer), seed=5).save_pretrained(root / "lm-tiny")
    tokenizer.save_pretrained(root / "lm-tiny")
    oos = {"oos_method": "class", "threshold": 0.0, "oos_label": OUT_OF_SCOPE, "max_length": 16}
    make_model_folder(root / "intent-tiny", [*LABELS, OUT_OF_SCOPE], oos, seed=2)


REQUEST = GenerationRequest(text="where is my parcel", intent="track_order", style="", settings=GREEDY)
TEXTS = ["where is my order", "cancel it please"]


def test_the_registry_runs_every_cpu_model_on_the_process_lane(tmp_path: Path, tokenizer) -> None:  # noqa: F811
    lm_and_intent_folders(tmp_path, tokenizer)
    registry = ModelRegistry(tmp_path, device="cpu", generation="continuous")
    try:
        classifier = registry.intent_model("intent-tiny")
        assert isinstance(classifier, OnLaneIntents) and classifier.lane is shared_lane()
        lm = registry.reply_model("lm-tiny")
        service = lm.model  # type: ignore[attr-defined]  # best-of-n's wrapper holds the service
        assert isinstance(service, ContinuousGenerator)
        assert isinstance(service.backend, DenseBackend) and service.backend.lane is shared_lane()
        on_lane, off_lane = classifier.predict(TEXTS), classifier.model.predict(TEXTS)
        # the same answers as off the lane (threads may sum in another order: float noise)
        assert [p.label for p in on_lane] == [p.label for p in off_lane]
        assert [p.confidence for p in on_lane] == pytest.approx([p.confidence for p in off_lane], abs=1e-5)
        plain = Generator.from_pretrained(tmp_path / "lm-tiny", device="cpu")
        assert lm.generate([REQUEST]) == plain.generate([REQUEST])
    finally:
        registry.close()
    with pytest.raises(RuntimeError, match="closed"):  # the registry's batch left the lane
        service.backend.submit(Job([1, 2], 2, NO_STOP))
    assert shared_lane().run(lambda: "the lane serves the rest of the process") != ""


def test_waves_generate_on_the_lane_and_gpus_keep_their_own_queue(tmp_path: Path, tokenizer) -> None:  # noqa: F811
    lm_and_intent_folders(tmp_path, tokenizer)
    registry = ModelRegistry(tmp_path, device="cpu", generation="waves")
    try:
        assert isinstance(registry.intent_model("intent-tiny"), OnLaneIntents)
        lm = registry.reply_model("lm-tiny")
        assert isinstance(lm, OnLaneReplies)
        threads: list[str] = []
        inner = lm.model.generate  # type: ignore[attr-defined]
        lm.model.generate = lambda requests: (
            threads.append(threading.current_thread().name) or inner(requests)
        )  # type: ignore[attr-defined]
        plain = Generator.from_pretrained(tmp_path / "lm-tiny", device="cpu")
        assert lm.generate([REQUEST]) == plain.generate([REQUEST])
        assert threads == ["models"]
    finally:
        registry.close()
    assert ModelRegistry(tmp_path, device="cuda").lane is None
