"""PayPal Payouts rail (REST v1): one PayPal payout batch per partner payout.

Exactly once: the batch's `sender_batch_id` is our payout key. PayPal refuses a sender_batch_id it
has seen in the last 30 days and points at the original batch, so every retry (timeout, 5xx, a
re-run after a crash) re-sends the same request and, if PayPal already has it, reads that batch
instead of paying again. One payout per PayPal batch keeps that guarantee simple: the set of items
under an id can never differ between two runs. (PayPal allows 15,000 items per batch; fewer,
larger batches would save requests but make a partial re-run unsafe.)

Results: PayPal answers 201 with the batch PENDING, so a payout is "processing" until polling
`GET /v1/payments/payouts/{payout_batch_id}` shows the item SUCCESS (paid) or FAILED/RETURNED/...
(failed). Polling, not webhooks: PayPal's webhooks are verified only by calling its
verify-webhook-signature API with the webhook id, which adds a call per event and a second moving
part; polling the batch gives the same facts (tasks/payouts/reconcile.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.payout.base import (
    PaymentMismatch,
    PayoutInstruction,
    PayoutRail,
    RailResult,
    RailState,
    RailStatus,
)
from partnerflow.providers.payout.http import (
    DEFAULT_BASE_DELAY_SECONDS,
    send_with_retries,
)
from partnerflow.providers.payout.settings import PayoutRailSettings

EMAIL_KEYS = ("paypal_email", "email")
PAYER_ID_KEYS = ("paypal_payer_id", "payer_id")
PAID = {"SUCCESS"}
FAILED = {"FAILED", "RETURNED", "BLOCKED", "REFUNDED", "REVERSED", "DENIED", "CANCELED"}
_BATCH_LINK = re.compile(r"/v1/payments/payouts/([A-Za-z0-9]+)")


@dataclass(frozen=True)
class ItemStatus(RailStatus):
    """`provider_ref` is the PayPal payout_batch_id (kept on our payout; polling needs it)."""

    transaction_id: str = ""
    amount: tuple[str, str] | None = None  # (value, currency) of our item, as PayPal holds it
    receiver: str = ""  # who PayPal pays the item to


def format_amount(amount_minor: int, exponent: int) -> str:
    """12345 with 2 digits (USD) -> '123.45'; 500 with 0 (JPY) -> '500'. Exact, never through a float."""
    return str(Decimal(int(amount_minor)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def _amount_of(instruction: PayoutInstruction) -> tuple[str, str]:
    """(value, currency) as PayPal writes an amount."""
    return format_amount(instruction.amount_minor, instruction.currency_exponent), instruction.currency.upper()


def receiver_of(destination: dict[str, Any]) -> tuple[str, str]:
    """(recipient_type, receiver) from the partner's payout details."""
    for key in EMAIL_KEYS:
        if destination.get(key):
            return "EMAIL", str(destination[key])
    for key in PAYER_ID_KEYS:
        if destination.get(key):
            return "PAYPAL_ID", str(destination[key])
    raise PermanentError("the partner has no PayPal email or payer id in their payout details")


def _held(status: ItemStatus) -> dict[str, str]:
    held = {"amount": " ".join(status.amount)} if status.amount else {}
    return {**held, "receiver": status.receiver} if status.receiver else held


def _accepted(status: ItemStatus) -> RailResult:
    """A payout PayPal holds and has not failed: paid, or still processing."""
    return RailResult(status=RailState.PAID if status.state == RailState.PAID else RailState.PROCESSING,
                      provider_ref=status.provider_ref, held=_held(status))


def difference(held: dict[str, str], instruction: PayoutInstruction) -> str:
    """What PayPal holds for our item that we did not ask for ("amount, receiver"); "" when nothing."""
    asked = {"amount": " ".join(_amount_of(instruction))}
    try:
        asked["receiver"] = receiver_of(instruction.destination)[1]
    except PermanentError:
        pass  # no PayPal details on file any more: compare the amount only
    return ", ".join(k for k, v in asked.items() if k in held and held[k].lower() != v.lower())


class PayPalRail(PayoutRail):
    name = "paypal"
    # PayPal dedupes a sender_batch_id for 30 days and cannot be asked by it; a day's margin.
    resend_window = timedelta(days=29)

    def __init__(self, settings: PayoutRailSettings, *, client_id: str | None = None, client_secret: str | None = None,
                 api_host: str | None = None, timeout: float | None = None, attempts: int = 4,
                 base_delay: float | None = None, sleep: Callable[[float], Any] = time.sleep):
        self._client_id = client_id or settings.paypal_client_id
        secret = client_secret or (settings.paypal_client_secret.get_secret_value()
                                   if settings.paypal_client_secret else None)
        if not (self._client_id and secret):
            raise PermanentError("PARTNERFLOW_PAYPAL_CLIENT_ID and PARTNERFLOW_PAYPAL_CLIENT_SECRET must be set")
        self._secret = secret
        self._client = httpx.Client(base_url=(api_host or settings.paypal_api_host).rstrip("/"),
                                    timeout=timeout or settings.payout_http_timeout_seconds)
        self._token: str | None = None
        self._token_expires = 0
        self._attempts, self._sleep = attempts, sleep
        self._base_delay = DEFAULT_BASE_DELAY_SECONDS if base_delay is None else base_delay

    # --- auth ---
    def _access_token(self, *, renew: bool = False) -> str:
        if renew or self._token is None or time.monotonic() >= self._token_expires:
            response = send_with_retries(
                lambda: self._client.post("/v1/oauth2/token", data={"grant_type": "client_credentials"},
                                          auth=(self._client_id, self._secret)),
                what="PayPal token", attempts=self._attempts, base_delay=self._base_delay, sleep=self._sleep)
            if response.status_code != 200:
                raise PermanentError(f"PayPal refused our client credentials (HTTP {response.status_code})")
            body = response.json()
            self._token = body["access_token"]
            # Renew a minute early so a token never expires between check and use.
            self._token_expires = time.monotonic() + max(0, int(body.get("expires_in", 0)) - 60)
        return self._token

    def _call(self, method: str, path: str, *, what: str, json: dict | None = None) -> httpx.Response:
        """One API call with retries; a rejected (expired) token is renewed once."""
        for renew in (False, True):
            headers = {"Authorization": f"Bearer {self._access_token(renew=renew)}"}
            response = send_with_retries(
                lambda headers=headers: self._client.request(method, path, json=json, headers=headers),
                what=what, attempts=self._attempts, base_delay=self._base_delay, sleep=self._sleep)
            if response.status_code != 401:
                return response
        raise PermanentError(f"{what}: PayPal refused our access token (401)")

    # --- paying ---
    def pay(self, instruction: PayoutInstruction) -> RailResult:
        if instruction.amount_minor <= 0:
            raise PermanentError(f"payout amount must be positive, got {instruction.amount_minor}")
        recipient_type, receiver = receiver_of(instruction.destination)
        key = instruction.idempotency_key
        value, currency = _amount_of(instruction)
        subject = f"{instruction.payer_name}: your partner commission" if instruction.payer_name \
            else "Your partner commission"
        body = {
            "sender_batch_header": {
                "sender_batch_id": key,
                "email_subject": subject,
                "email_message": instruction.description or "Thank you for your partnership.",
            },
            "items": [{
                "recipient_type": recipient_type,
                "amount": {"value": value, "currency": currency},
                "receiver": receiver,
                "note": instruction.description or f"Partner payout {key}",
                "sender_item_id": key,
            }],
        }
        response = self._call("POST", "/v1/payments/payouts", what="PayPal payout", json=body)
        if response.status_code == 201:
            batch_id = response.json()["batch_header"]["payout_batch_id"]
            if instruction.on_accepted is not None:  # recorded at once: the only way to find it again
                instruction.on_accepted(batch_id)
            return RailResult(status=RailState.PROCESSING, provider_ref=batch_id)
        existing = self._duplicate_of(response, key)
        if existing is not None:  # PayPal already has this payout: read it, do not pay again
            status = self.status(key, existing)
            problem = difference(_held(status), instruction)
            if problem:
                raise PaymentMismatch(f"PayPal batch {existing} holds another {problem} for {key}; not paying again",
                                      evidence={"payout_batch_id": existing, "held": _held(status),
                                                "asked": {"amount": f"{value} {currency}"}})
            if status.state == RailState.FAILED:
                raise PermanentError(f"PayPal payout {existing} failed: {status.reason}")
            return _accepted(status)
        raise PermanentError(f"PayPal refused the payout: {self._message(response)}")

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}"
        details = "; ".join(f"{d.get('field', '')}: {d.get('issue', '')}" for d in body.get("details") or [])
        return f"{body.get('name', response.status_code)} {body.get('message', '')} {details}".strip()

    @staticmethod
    def _duplicate_of(response: httpx.Response, sender_batch_id: str) -> str | None:
        """The original payout_batch_id when PayPal refused a reused sender_batch_id, else None."""
        if response.status_code != 400:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        text = str(body).upper()
        if "SENDER_BATCH_ID" not in text or body.get("name") == "VALIDATION_ERROR":
            return None
        for link in body.get("links") or []:
            match = _BATCH_LINK.search(str(link.get("href", "")))
            if match:
                return match.group(1)
        raise AmbiguousError(f"PayPal says {sender_batch_id} was used before but gives no link to it")

    # --- polling ---
    def status(self, idempotency_key: str, provider_ref: str) -> ItemStatus:
        """Where PayPal's payout batch `provider_ref` (and our item in it, `idempotency_key`) stands."""
        payout_batch_id, sender_item_id = provider_ref, idempotency_key
        response = self._call("GET", f"/v1/payments/payouts/{payout_batch_id}", what="PayPal payout status")
        if response.status_code == 404:
            # Never read as "failed": a wrong API host (sandbox vs live) would give money back to balances
            # that PayPal has paid. Unknown, for a person to look at.
            raise AmbiguousError(f"PayPal has no payout batch {payout_batch_id} "
                                 "(is PARTNERFLOW_PAYPAL_API_HOST right?)")
        if response.status_code != 200:
            raise RetryableError(f"PayPal payout status: HTTP {response.status_code}")
        body = response.json()
        batch_status = (body.get("batch_header") or {}).get("batch_status", "")
        items = body.get("items") or []
        item = next((i for i in items if (i.get("payout_item") or {}).get("sender_item_id") == sender_item_id),
                    items[0] if len(items) == 1 else None)
        if item is None:
            if batch_status in FAILED:
                return ItemStatus(RailState.FAILED, payout_batch_id, reason=f"batch {batch_status}")
            return ItemStatus(RailState.PROCESSING, payout_batch_id)
        state = item.get("transaction_status", "")
        held = (item.get("payout_item") or {}).get("amount") or {}
        amount = (str(held.get("value")), str(held.get("currency"))) if held else None
        receiver = str((item.get("payout_item") or {}).get("receiver") or "")
        if state in PAID:
            return ItemStatus(RailState.PAID, payout_batch_id, transaction_id=item.get("transaction_id") or "",
                              amount=amount, receiver=receiver)
        if state in FAILED:
            error = item.get("errors") or {}
            reason = f"{state}: {error.get('name', '')} {error.get('message', '')}".strip()
            return ItemStatus(RailState.FAILED, payout_batch_id, reason=reason, amount=amount, receiver=receiver)
        # PENDING, UNCLAIMED, ONHOLD, NEW
        return ItemStatus(RailState.PROCESSING, payout_batch_id, amount=amount, receiver=receiver)

    def lookup(self, idempotency_key: str, provider_ref: str | None = None) -> RailResult | None:
        """From the payout batch id we recorded. None when we hold none (or it failed): `pay()` then
        re-sends the same sender_batch_id, which PayPal answers with the original batch, never a second payment.
        """
        if not provider_ref:
            return None
        status = self.status(idempotency_key, provider_ref)
        if status.state == RailState.FAILED:
            return None
        return _accepted(status)

    def mismatch(self, instruction: PayoutInstruction, found: RailResult) -> str | None:
        problem = difference(found.held, instruction)
        return f"PayPal batch {found.provider_ref} holds another {problem} than the payout asked" if problem else None

    def close(self) -> None:
        self._client.close()
