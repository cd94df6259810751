"""Prometheus metrics the engine, the outboxes and the stream upkeep update (served at
``/metrics`` by every ``chatbot run`` role).

Stream gauges (depth, lag, pending) are set by ``core.upkeep`` on its timer, in each
process that reads the stream, so every worker reports the intake backlog it shares.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from core.messages import IncomingMessage, Reply, Route

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

MESSAGES = Counter(
    "chatbot_messages_total", "Messages answered, by platform and route", ["platform", "route"]
)
BATCH_SECONDS = Histogram(
    "chatbot_engine_batch_seconds",
    "Time to answer one intake batch",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
ESCALATIONS_OPENED = Counter(
    "chatbot_escalations_opened_total", "Conversations handed to a human (a ticket opened or reopened)"
)
INTAKE_TO_REPLY_SECONDS = Histogram(
    "chatbot_intake_to_reply_seconds",
    "From the customer's message to the engine's reply (queueing plus models)",
    ["platform"],
    buckets=_LATENCY_BUCKETS,
)
REPLY_TO_DELIVERED_SECONDS = Histogram(
    "chatbot_reply_to_delivered_seconds",
    "From the engine's reply to the platform accepting it (outbound queue plus retries)",
    ["platform"],
    buckets=_LATENCY_BUCKETS,
)
DELIVERY_RETRIES = Counter(
    "chatbot_delivery_retries_total", "Delivery attempts that failed and were retried", ["platform", "reason"]
)
STREAM_LENGTH = Gauge("chatbot_stream_length", "Entries in a Redis stream (queue depth)", ["stream"])
STREAM_LAG = Gauge(
    "chatbot_stream_lag", "Entries not yet delivered to a consumer group (consumer lag)", ["stream", "group"]
)
STREAM_PENDING = Gauge(
    "chatbot_stream_pending", "Entries delivered to a group but not yet acknowledged", ["stream", "group"]
)
STREAM_CLAIMED = Counter(
    "chatbot_stream_claimed_total", "Entries taken over from a consumer that stopped", ["stream", "group"]
)
DUPLICATES_PREVENTED = Counter(
    "chatbot_duplicates_prevented_total",
    "Intake entries read again after they were committed (a redelivery), acknowledged without a second reply",
)
DEAD_LETTERED = Counter(
    "chatbot_dead_lettered_total", "Intake entries moved to the dead-letter stream after repeated failures"
)
DEAD_LETTERS = Gauge("chatbot_dead_letters", "Entries in the dead-letter stream (set by the intake upkeep)")
DEFERRED = Counter(
    "chatbot_intake_deferred_total",
    "Intake entries left pending because their conversation was busy on another worker or behind",
)


def observe_reply(message: IncomingMessage, reply: Reply) -> None:
    """Count one answered message (the engine calls this for every reply it commits)."""
    MESSAGES.labels(reply.platform, reply.route.value).inc()
    INTAKE_TO_REPLY_SECONDS.labels(reply.platform).observe(max(0.0, reply.timestamp - message.timestamp))
    if reply.route is Route.ESCALATE:
        ESCALATIONS_OPENED.inc()


def observe_delivered(reply: Reply, now: float) -> None:
    REPLY_TO_DELIVERED_SECONDS.labels(reply.platform).observe(max(0.0, now - reply.timestamp))


def stream_label(stream: str, namespace: str) -> str:
    """A stream's name without the namespace and hash-tag braces (``stream:intake``,
    ``stream:outbound:web:support``), a stable label."""
    return stream.removeprefix(f"{namespace}:").replace("{", "").replace("}", "")


# Generation, set by core.generator for every batch it writes: tokens/s is
# rate(chatbot_generated_tokens_total) / rate(chatbot_generation_seconds_sum).
GENERATION_BATCH = Histogram(
    "chatbot_generation_batch_size",
    "Replies written by one generation call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
GENERATION_SECONDS = Histogram(
    "chatbot_generation_seconds", "Time of one generation call", buckets=_LATENCY_BUCKETS
)
GENERATED_TOKENS = Counter("chatbot_generated_tokens_total", "New tokens written by the reply model")

# The fact guard (core.finishing): items of model replies that nobody wrote, replaced
# with a phrase, by kind (number, amount, phone, email, url); replies it emptied.
FACTS_REPLACED = Counter(
    "chatbot_facts_replaced_total",
    "Numbers, amounts, phone numbers, e-mail addresses and links a model reply invented, replaced",
    ["kind"],
)
REPLIES_WITHDRAWN = Counter(
    "chatbot_replies_withdrawn_total",
    "Model replies the fact guard left without their point, answered with the persona's rephrase text",
)
