"""``chatbot run`` with scripted models in place of the trained ones, for the chaos test
and benchmark (tests/test_chaos.py, benchmarks/chaos.py): the same command, roles,
engine, upkeep and health server; only the models at the edge are replaced, so a worker
starts in a second and the run measures the recovery machinery, not GPT-2.

    python -m tests.chaos_worker run --role worker --port 8123
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bots import runtime
from core.protocols import GenerationRequest
from tests.scripted_models import ScriptedProvider, ScriptedReplies


class SlowReplies(ScriptedReplies):
    """Scripted replies that take a little time per batch, as a model does, so a kill
    can land between reading a batch and committing it."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        time.sleep(0.02)
        return [f"answer to {r.text}" for r in requests]


def _scripted(*_args: object, **_kwargs: object) -> ScriptedProvider:
    return ScriptedProvider(replies=SlowReplies())


runtime.ModelRegistry = _scripted  # type: ignore[assignment,misc]  # the one seam: models

if __name__ == "__main__":
    from bots.cli import app

    app(prog_name="chatbot")
