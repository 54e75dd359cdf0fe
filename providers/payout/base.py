"""The payout rail interface: one way of moving money to a partner.

The payout engine records a Payout row with a deterministic idempotency key BEFORE calling
`pay()`; a rail passes that key to its provider (Stripe's Idempotency-Key header, PayPal's
sender_batch_id, the ledger's unique column, SEPA's EndToEndId) so a repeated call never pays twice.

Errors: RetryableError (nothing happened, try later), PermanentError (will never work),
AmbiguousError (maybe accepted: call `lookup()` before trying again), PaymentMismatch (the provider
holds a payment under our key, but not as we asked: a person decides, nothing is sent again).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from partnerflow.providers.errors import ProviderError


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
    # Digits of the currency's minor unit (ISO 4217: 2 for USD, 0 for JPY, 3 for KWD), for rails whose
    # API takes decimal amounts; the caller knows the currency table.
    currency_exponent: int = 2
    payer_name: str = ""  # who pays (our company), for the rails that show it to the partner
    # Called with the provider's reference as soon as it accepted the payment (before anything else can
    # fail), so the engine can record it: a provider found only by its own id (PayPal) stays findable.
    on_accepted: Callable[[str], None] | None = field(default=None, repr=False, compare=False)


class NeedsReview(ProviderError):
    """Whether or how the money moved cannot be settled by asking again: a person decides.

    Never recorded as failed (that would pay the commissions again) nor as paid. `evidence` (what we asked,
    what the provider holds; no secrets) is kept for that person.
    """

    def __init__(self, reason: str, evidence: dict[str, Any] | None = None):
        super().__init__(reason)
        self.evidence = evidence or {}


class PaymentMismatch(NeedsReview):
    """The provider holds a payment under our key with another amount, currency or destination."""


class RailState(StrEnum):
    """What a provider says about a payment."""

    PAID = "paid"
    PROCESSING = "processing"  # accepted; a webhook, a poll or a bank report confirms it later
    FAILED = "failed"  # only ever from the provider's own answer


@dataclass(frozen=True)
class RailResult:
    status: RailState  # PAID or PROCESSING: a payment the provider accepted
    provider_ref: str
    # What the provider holds for it, in the rail's own terms ({"amount": ..., "destination": ...}), when the
    # answer says so; `PayoutRail.mismatch()` compares it with what we asked.
    held: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RailStatus:
    """Where a payment stands at the provider now. Never FAILED unless the provider says so."""

    state: RailState
    provider_ref: str
    reason: str = ""


class PayoutRail(ABC):
    """Every method the payout engine, reconciliation and the CLI call on a rail."""

    name: str
    # True when pay_batch() sends its instructions together (SEPA: one bank file): the engine then hands
    # it each claimed chunk at once instead of paying one payout at a time.
    pays_in_batches: bool = False
    # How long the provider dedupes our key when we send the payment again; None: for good (or a lookup by
    # key finds it for good). Past it a payout whose first answer was lost is never sent again.
    resend_window: timedelta | None = None

    @abstractmethod
    def pay(self, instruction: PayoutInstruction) -> RailResult:
        """Move the money once under `instruction.idempotency_key`; raise a ProviderError otherwise."""

    def pay_batch(self, instructions: list[PayoutInstruction]) -> list[RailResult | ProviderError]:
        """Per instruction, in order, its result or the error that stopped it."""
        outcomes: list[RailResult | ProviderError] = []
        for instruction in instructions:
            try:
                outcomes.append(self.pay(instruction))
            except ProviderError as exc:
                outcomes.append(exc)
        return outcomes

    @abstractmethod
    def lookup(self, idempotency_key: str, provider_ref: str | None = None) -> RailResult | None:
        """What the provider holds under this key (None: it never accepted it). `provider_ref` is what
        we recorded from an earlier answer, for providers that find a payment only by their own id."""

    def mismatch(self, instruction: PayoutInstruction, found: RailResult) -> str | None:
        """Why the payment the provider holds (`found`, from lookup) is not the one we asked for; None when
        it is, or when the rail cannot tell."""
        return None

    def status(self, idempotency_key: str, provider_ref: str) -> RailStatus:
        """Where an accepted payment stands. By default what `lookup()` finds: rails that settle on
        acceptance are paid or still processing, never failed by a poll."""
        found = self.lookup(idempotency_key, provider_ref)
        if found is None:
            return RailStatus(RailState.PROCESSING, provider_ref)
        return RailStatus(found.status, found.provider_ref)

    def close(self) -> None:  # noqa: B027 (rails without a connection have nothing to close)
        """Release the rail's connection, if it holds one."""
