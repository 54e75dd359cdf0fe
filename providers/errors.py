"""How provider failures are classified, for every capability (email, e-sign, payouts)."""

from __future__ import annotations


class ProviderError(Exception):
    """Base class; `reason` is safe to store and show (no secrets)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RetryableError(ProviderError):
    """Timeouts, 429, 5xx: try again later; `retry_after` seconds when the provider said."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """Bad request, rejected recipient, invalid account: do not retry."""


class AmbiguousError(RetryableError):
    """The request may have been accepted (e.g. a timeout after sending): reconcile before retrying."""
