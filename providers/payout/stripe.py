"""Stripe Connect rail: a transfer from the platform balance to the partner's connected account.

Exactly once: every attempt for a payout sends the same `Idempotency-Key` (our payout key), which
Stripe dedupes for 24 hours, and the same `transfer_group` (also the payout key), which `lookup()`
searches without time limit. So a timeout after Stripe accepted the transfer is retried safely,
and a re-run days later finds the transfer instead of making a second one.

A transfer is final when created (the money is in the partner's Stripe balance): status "paid".
`transfer.reversed` webhooks turn it back into a failure (web/payouts_webhooks.py).

Webhooks are signed with `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`;
`verify_webhook()` checks it and the timestamp window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.payout.base import (
    PaymentMismatch,
    PayoutInstruction,
    PayoutRail,
    RailResult,
    RailState,
)
from partnerflow.providers.payout.http import (
    DEFAULT_BASE_DELAY_SECONDS,
    send_with_retries,
)
from partnerflow.providers.payout.settings import PayoutRailSettings

# Keys under which payout details may carry the connected account id.
ACCOUNT_KEYS = ("stripe_account_id", "stripe_account", "account_id")


class SignatureError(ValueError):
    """A webhook whose signature, timestamp or body does not check out; nothing may be done with it."""


def account_of(destination: dict[str, Any]) -> str:
    for key in ACCOUNT_KEYS:
        value = destination.get(key)
        if value:
            if not str(value).startswith("acct_"):
                raise PermanentError("the Stripe connected account id must start with acct_")
            return str(value)
    raise PermanentError("the partner has no Stripe connected account id in their payout details")


def _stripe_error(response: httpx.Response) -> tuple[str, str, str]:
    """(type, code, message) from Stripe's {"error": {...}} body."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    return (str(error.get("type", "")), str(error.get("code", "")),
            str(error.get("message") or f"HTTP {response.status_code}"))


class StripeRail(PayoutRail):
    name = "stripe"

    def __init__(self, settings: PayoutRailSettings, *, api_key: str | None = None, api_host: str | None = None,
                 timeout: float | None = None, attempts: int = 4, base_delay: float | None = None,
                 sleep: Callable[[float], Any] = time.sleep):
        key = api_key or (settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None)
        if not key:
            raise PermanentError("PARTNERFLOW_STRIPE_API_KEY is not set")
        self._client = httpx.Client(
            base_url=(api_host or settings.stripe_api_host).rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout or settings.payout_http_timeout_seconds,
        )
        self._attempts, self._sleep = attempts, sleep
        self._base_delay = DEFAULT_BASE_DELAY_SECONDS if base_delay is None else base_delay

    def pay(self, instruction: PayoutInstruction) -> RailResult:
        if instruction.amount_minor <= 0:
            raise PermanentError(f"payout amount must be positive, got {instruction.amount_minor}")
        params = {
            "amount": str(int(instruction.amount_minor)),  # minor units, as Stripe expects
            "currency": instruction.currency.lower(),
            "destination": account_of(instruction.destination),
            "transfer_group": instruction.idempotency_key,
            "description": instruction.description or f"Partner payout {instruction.idempotency_key}",
            "metadata[payout_id]": str(instruction.payout_id),
            "metadata[partner_id]": str(instruction.partner_id),
        }

        # Stripe keeps idempotency keys for 24 hours only; its record of transfers is kept for good.
        existing = self._find(instruction.idempotency_key)
        if existing is not None:
            return self._same_payment(existing, params)

        def send() -> httpx.Response:
            return self._client.post("/v1/transfers", data=params,
                                     headers={"Idempotency-Key": instruction.idempotency_key})

        try:
            response = send_with_retries(send, what="Stripe transfer", attempts=self._attempts,
                                         base_delay=self._base_delay, sleep=self._sleep,
                                         retry_status=lambda r: r.status_code in (409, 429) or r.status_code >= 500)
        except AmbiguousError:
            # Still no answer: Stripe's own record decides before anyone tries again.
            try:
                found = self._find(instruction.idempotency_key)
            except RetryableError:
                found = None
            if found is not None:
                return self._same_payment(found, params)
            raise
        if response.status_code == 200:
            return RailResult(status=RailState.PAID, provider_ref=response.json()["id"])
        kind, code, message = _stripe_error(response)
        if response.status_code == 401:
            raise PermanentError("Stripe rejected the API key (401)")
        if kind == "idempotency_error":
            # The key was used with other parameters: never pay a different amount under the same payout.
            raise PermanentError(f"Stripe refused: payout key reused with different parameters ({message})")
        if code == "balance_insufficient":  # nothing moved; works once the platform balance is topped up
            raise RetryableError(f"Stripe platform balance is insufficient ({message})")
        raise PermanentError(f"Stripe refused the transfer: {message}")

    @staticmethod
    def _same_payment(transfer: dict, params: dict) -> RailResult:
        found = _found(transfer)
        problem = _difference(found.held, {"amount": params["amount"], "currency": params["currency"],
                                           "destination": params["destination"]})
        if problem:
            raise PaymentMismatch(
                f"Stripe already holds transfer {transfer.get('id')} for {params['transfer_group']} with another "
                f"{problem}; not paying again",
                evidence={"transfer": transfer.get("id"), "held": found.held,
                          "asked": {k: params[k] for k in ("amount", "currency", "destination")}})
        return found

    def mismatch(self, instruction: PayoutInstruction, found: RailResult) -> str | None:
        try:
            destination = account_of(instruction.destination)
        except PermanentError:
            destination = None  # no account on file any more: compare what we still know
        asked = {"amount": str(int(instruction.amount_minor)), "currency": instruction.currency.lower(),
                 "destination": destination}
        problem = _difference(found.held, asked)
        return f"Stripe transfer {found.provider_ref} has another {problem} than payout asked" if problem else None

    def _find(self, idempotency_key: str) -> dict | None:
        response = send_with_retries(
            lambda: self._client.get("/v1/transfers", params={"transfer_group": idempotency_key, "limit": 10}),
            what="Stripe transfer lookup", attempts=self._attempts, base_delay=self._base_delay, sleep=self._sleep)
        if response.status_code == 401:
            raise PermanentError("Stripe rejected the API key (401)")
        if response.status_code != 200:
            raise RetryableError(f"Stripe transfer lookup: HTTP {response.status_code}")
        transfers = response.json().get("data") or []
        if len(transfers) > 1:  # cannot happen through this rail; say so loudly if it ever does
            raise PermanentError(f"Stripe holds {len(transfers)} transfers for {idempotency_key}")
        return transfers[0] if transfers else None

    def lookup(self, idempotency_key: str, provider_ref: str | None = None) -> RailResult | None:
        """The transfer made for this payout, found by its transfer_group (None: Stripe has none)."""
        transfer = self._find(idempotency_key)
        return None if transfer is None else _found(transfer)

    def close(self) -> None:
        self._client.close()


def _found(transfer: dict) -> RailResult:
    """A transfer Stripe holds, with what it moved: it is final when created."""
    held = {"amount": str(transfer.get("amount")), "currency": str(transfer.get("currency", "")).lower(),
            "destination": transfer.get("destination")}
    return RailResult(status=RailState.PAID, provider_ref=transfer["id"], held=held)


def _difference(held: dict, asked: dict) -> str:
    """The fields ("amount, destination") whose held value differs from what we asked; "" when none does."""
    return ", ".join(k for k, v in asked.items() if v is not None and k in held and str(held[k]) != str(v))


def verify_webhook(payload: bytes, signature_header: str | None, secret: str, *, tolerance_seconds: int = 300,
                   now: float | None = None) -> dict[str, Any]:
    """The event, once the Stripe-Signature header proves it came from Stripe within the window."""
    if not signature_header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in signature_header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed timestamp in Stripe-Signature") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("Stripe-Signature lacks t= or v1=")
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest raises TypeError on non-ASCII text (a 500 for a forged header).
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
        raise SignatureError("Stripe-Signature does not match")
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        raise SignatureError("Stripe-Signature timestamp is outside the tolerance window")
    try:
        event = json.loads(payload)
    except ValueError:
        raise SignatureError("webhook body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str) \
            or not isinstance((event.get("data") or {}).get("object"), dict):
        raise SignatureError("webhook body is not a Stripe event")
    return event
