"""Prometheus metrics the engine and adapters update (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "chatbot_messages_total", "Messages answered, by platform and route", ["platform", "route"]
)
BATCH_SECONDS = Histogram(
    "chatbot_engine_batch_seconds",
    "Time to answer one intake batch",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
