"""What a failed platform call means for delivery (the outbox acts on the error's class)."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.failures import DEFAULT_RETRY_AFTER, for_status, retry_after_seconds
from core.errors import AdapterAuthError, DeliveryError, PermanentDeliveryError, RateLimited

AUTH = AdapterAuthError("TOKEN was rejected")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        (3, 3.0),
        (dt.timedelta(seconds=90), 90.0),
        (None, DEFAULT_RETRY_AFTER),
        ("", DEFAULT_RETRY_AFTER),
        ("soon", DEFAULT_RETRY_AFTER),
        ("-1", DEFAULT_RETRY_AFTER),
        ("nan", DEFAULT_RETRY_AFTER),
        ({"seconds": 3}, DEFAULT_RETRY_AFTER),
    ],
)
def test_retry_after_reads_headers_and_sdk_fields(value: object, seconds: float) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_default_is_the_callers() -> None:
    assert retry_after_seconds(None, default=1.0) == 1.0


def test_status_sorts_failures_by_what_the_outbox_must_do() -> None:
    assert for_status(401, "no", auth=AUTH) is AUTH
    limited = for_status(429, "slow down", auth=AUTH, retry_after="12")
    assert isinstance(limited, RateLimited) and limited.retry_after == 12.0
    for retried in (0, 500, 502, 503):
        error = for_status(retried, f"status {retried}", auth=AUTH)
        assert type(error) is DeliveryError and str(error) == f"status {retried}"
    for dropped in (400, 403, 404):
        assert type(for_status(dropped, "refused", auth=AUTH)) is PermanentDeliveryError
