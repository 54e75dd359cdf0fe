"""What the SaaS e-signature vendors (Dropbox Sign, DocuSign, Documenso) share: HTTP and its errors.

429 / 5xx / timeouts -> RetryableError (with Retry-After), other 4xx -> PermanentError naming
the vendor's reason. A create call that may have reached the vendor (read timeout, 500/502/504)
-> AmbiguousError, so the caller searches by our reference before sending again.
"""

from __future__ import annotations

import email.utils
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.esign.base import SigningLink, WebhookRejected

# Status codes after which a create may or may not have happened at the vendor.
_AMBIGUOUS_STATUSES = {500, 502, 504}


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from Retry-After (seconds or HTTP date), or from a rate-limit reset epoch header."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                return None
    reset = response.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) - time.time())
    return None


def error_reason(response: httpx.Response, pick: Callable[[Any], tuple[Any, ...]]) -> str:
    """The vendor's reason from its JSON error body (`pick` names the parts), else the start of the text."""
    try:
        parts = pick(response.json())
    except (ValueError, AttributeError, TypeError):
        return response.text[:200]
    return ": ".join(str(p) for p in parts if p not in (None, ""))


def call(client: httpx.Client, method: str, url: str, *, provider: str, reason_of: Callable[[httpx.Response], str],
         creating: bool = False, **kwargs) -> httpx.Response:
    """One HTTP call, with every failure turned into a RetryableError / AmbiguousError / PermanentError."""
    what = f"{provider} {method} {httpx.URL(url).path}"  # no query string: presigned URLs carry secrets there
    try:
        response = client.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RetryableError(f"{what}: cannot connect ({type(exc).__name__})") from None
    except httpx.TransportError as exc:  # read/write timeout, connection dropped mid-way
        cls = AmbiguousError if creating else RetryableError
        raise cls(f"{what}: no answer ({type(exc).__name__})") from None
    if response.status_code < 400:
        return response
    reason = f"{what}: HTTP {response.status_code} {reason_of(response)}".strip()
    if response.status_code == 429:
        raise RetryableError(reason, retry_after=retry_after(response))
    if response.status_code >= 500:
        cls = AmbiguousError if creating and response.status_code in _AMBIGUOUS_STATUSES else RetryableError
        raise cls(reason, retry_after=retry_after(response))
    raise PermanentError(reason)


def http_client(settings_timeout: float) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(settings_timeout, connect=min(5.0, settings_timeout)))


def iso_time(value: Any) -> datetime:
    """An ISO 8601 time from a callback ('Z' allowed); naive values are taken as UTC."""
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def json_payload(body: bytes, *, check: Callable[[dict[str, Any]], Any], what: str) -> dict[str, Any]:
    """The callback's JSON body; `check` reads the fields we rely on, so a missing one rejects it (400)."""
    try:
        payload = json.loads(body)
        check(payload)
    except (ValueError, KeyError, TypeError):
        raise WebhookRejected(400, f"malformed {what}") from None
    return payload


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of two secrets as UTF-8 bytes: any text (non-ASCII too) compares without
    raising, and an empty expected secret matches nothing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def required(settings: Any, name: str) -> str:
    """The value of setting `name` (a secret's plain value); a PermanentError naming it when unset."""
    value = getattr(settings, name)
    if not value:
        raise PermanentError(f"PARTNERFLOW_{name.upper()} is not set")
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


class HttpVendor:
    """What every SaaS vendor answers the same way."""

    name = ""
    callback_reply: str | None = None
    callback_media_types: tuple[str, ...] = ("application/json",)

    def signing_link(self, reference: str) -> SigningLink | None:
        return None  # the vendor mails the signer itself
