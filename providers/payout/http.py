"""What the SaaS payout rails (Stripe, PayPal) share: retry timing and how HTTP failures are classified.

A request that may have reached the provider (read timeout, connection dropped mid-answer) is
*ambiguous*: it is retried only with the same idempotency identifiers, and if it stays unanswered
the caller gets AmbiguousError, meaning "look the payment up before trying again".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from partnerflow.providers.errors import AmbiguousError, RetryableError

RETRY_AFTER_CAP_SECONDS = 60.0
DEFAULT_BASE_DELAY_SECONDS = 0.5  # first backoff step; doubles per attempt
AMBIGUOUS_STATUS = (409, 500, 502, 504)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), RETRY_AFTER_CAP_SECONDS))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def backoff(attempt: int, base: float) -> float:
    return min(base * (2 ** attempt), RETRY_AFTER_CAP_SECONDS)


def send_with_retries(send: Callable[[], httpx.Response], *, what: str, attempts: int, base_delay: float,
                      sleep: Callable[[float], Any] = time.sleep,
                      retry_status: Callable[[httpx.Response], bool] = lambda r: r.status_code == 429
                      or r.status_code >= 500) -> httpx.Response:
    """Call `send()` until it answers with a non-retryable status; raise Retryable/AmbiguousError at the end.

    `send` must repeat the SAME request (same idempotency key / sender_batch_id) every time.
    """
    ambiguous = False
    last_reason = ""
    wait: float | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(wait if wait is not None else backoff(attempt - 1, base_delay))
        wait = None
        try:
            response = send()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            last_reason = f"{what}: could not connect ({type(exc).__name__})"  # never reached the provider
            continue
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            ambiguous = True  # the request may have been received and acted on
            last_reason = f"{what}: no answer ({type(exc).__name__})"
            continue
        if retry_status(response):
            wait = retry_after(response)
            last_reason = f"{what}: HTTP {response.status_code}"
            # 500/502/504 may come after the provider acted; 409 = our first attempt is still running there.
            ambiguous = ambiguous or response.status_code in AMBIGUOUS_STATUS
            continue
        return response
    if ambiguous:
        raise AmbiguousError(last_reason)
    raise RetryableError(last_reason, retry_after=wait)
