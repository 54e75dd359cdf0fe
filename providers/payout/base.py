"""The payout rail interface: one way of moving money to a partner.

The payout engine records a Payout row with a deterministic idempotency key BEFORE calling
`pay()`; a rail passes that key to its provider (Stripe's Idempotency-Key header, PayPal's
sender_batch_id, the ledger's unique column) so a repeated call never pays twice.

Errors: RetryableError (nothing happened, try later), PermanentError (will never work),
AmbiguousError (maybe accepted: call `lookup()` before trying again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class PayoutInstruction:
    payout_id: int
    idempotency_key: str
    partner_id: int
    partner_name: str
    partner_email: str
    amount_minor: int
    currency: str
    # Decrypted payout details (IBAN/BIC, connected account id, PayPal email...): memory only, never logged.
    destination: dict[str, Any] = field(default_factory=dict, repr=False)
    description: str = ""


@dataclass(frozen=True)
class RailResult:
    status: Literal["paid", "processing"]  # processing: a webhook or a later lookup confirms it
    provider_ref: str


@runtime_checkable
class PayoutRail(Protocol):
    name: str
    # True when calling pay() again with the same idempotency key can never pay twice.
    idempotent: bool

    def pay(self, instruction: PayoutInstruction) -> RailResult: ...

    def lookup(self, idempotency_key: str) -> RailResult | None:
        """What the provider knows about this key (None: it never accepted it)."""
        ...
