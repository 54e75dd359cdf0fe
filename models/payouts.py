"""Payouts tables: conversions, commissions, payout batches and payouts, conversion sources, FX rates.

Money is integer minor units plus an ISO 4217 code. The ledger rail's own record (`ledger_transfer`)
is the provider's table; it is imported here so that it is registered with the others.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow
from partnerflow.providers.payout.ledger import LedgerTransfer

__all__ = ["Commission", "CommissionKind", "CommissionStatus", "Conversion", "ConversionKind", "ConversionSource",
           "FxRate", "Installation", "LedgerTransfer", "Payout", "PayoutBatch", "PayoutBatchStatus", "PayoutStatus",
           "SepaFileEntry"]


class ConversionKind(StrEnum):
    SALE = "sale"
    LEAD = "lead"
    SIGNUP = "signup"
    RECURRING = "recurring"
    REFUND = "refund"
    CHARGEBACK = "chargeback"
    REVERSAL = "reversal"


class CommissionStatus(StrEnum):
    PENDING = "pending"  # inside its lock period; recomputed while the month's tiers and caps may change
    PAYABLE = "payable"  # part of the partner's balance
    CANCELLED = "cancelled"  # earns nothing (not qualifying, or reversed)
    PAID = "paid"


class CommissionKind(StrEnum):
    CONVERSION = "conversion"
    BONUS = "bonus"


class PayoutBatchStatus(StrEnum):
    DRAFT = "draft"  # built, waiting for a decision
    APPROVED = "approved"  # being paid (or some payouts still open)
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided in time
    PAID = "paid"
    PARTIALLY_PAID = "partially_paid"  # every payout final, some failed


class PayoutStatus(StrEnum):
    PENDING = "pending"  # recorded, not claimed
    SENDING = "sending"  # claimed by a worker; the rail may have been called
    PROCESSING = "processing"  # accepted; a webhook, poll or bank report confirms it
    PAID = "paid"
    FAILED = "failed"  # its commissions went back to the balance
    HELD = "held"  # held by the approver
    # The money may have moved, but not as we asked (amount, currency, destination), or whether it moved
    # can no longer be asked safely: commissions stay attached, nothing is sent again, a person decides.
    NEEDS_REVIEW = "needs_review"


# Payouts whose outcome is still open.
OPEN_PAYOUT = (PayoutStatus.PENDING, PayoutStatus.SENDING, PayoutStatus.PROCESSING)
# Payouts that keep their batch open (not final): the open ones and those waiting for a person.
UNSETTLED_PAYOUT = (*OPEN_PAYOUT, PayoutStatus.NEEDS_REVIEW)
# Batches whose payouts may be (or have been) paid.
PAYABLE_BATCH = (PayoutBatchStatus.APPROVED, PayoutBatchStatus.PAID, PayoutBatchStatus.PARTIALLY_PAID)


class Conversion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_conversion_source_external"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    external_id: str
    kind: str = ConversionKind.SALE
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    tracking_code: str | None = None
    coupon_code: str | None = None
    amount_minor: int = Field(default=0, sa_type=BigInteger)
    currency: str = "USD"
    customer_ref: str | None = None
    # For fraud checks (compliance): the buyer's email when the source sends it (self-referral) and the
    # time of the tracked click that led here (click-to-conversion time).
    customer_email: str | None = None  # rows from before the intake hashed it; new rows keep only the hashes
    clicked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The click the source passed on (?pf_click=), the customer's email and its domain as keyed hashes
    # (partnerflow.secrets.pseudonym), and how the partner was found: click | tracking_code | coupon.
    click_id: str | None = Field(default=None, index=True)
    customer_email_hash: str | None = None
    customer_domain_hash: str | None = None
    attribution: str | None = None
    product: str | None = None
    category: str | None = None
    reverses_id: int | None = Field(default=None, foreign_key="conversion.id")
    occurred_at: datetime = Field(sa_type=UTCDateTime, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Commission(SQLModel, table=True):
    # A partner's open balance (status payable, no payout yet) is read and attached by this index.
    __table_args__ = (Index("ix_commission_partner_status_payout", "partner_id", "status", "payout_id"),)

    id: int | None = Field(default=None, primary_key=True)
    # A conversion's commission, or a bonus line (kind "bonus": no conversion, its bonus and reason instead).
    conversion_id: int | None = Field(default=None, foreign_key="conversion.id", index=True, unique=True)
    kind: str = CommissionKind.CONVERSION
    bonus_id: int | None = Field(default=None, foreign_key="bonus.id", unique=True)  # one line per bonus: paid once
    reason: str | None = None  # why a bonus was granted, in the partner's words
    partner_id: int = Field(foreign_key="partner.id", index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    rule: str = ""  # which rule produced it, for the partner's statement
    period: str = Field(default="", index=True)  # "YYYY-MM" of the conversion: tiers and caps are monthly
    status: str = Field(default=CommissionStatus.PENDING, index=True)
    payable_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    payout_id: int | None = Field(default=None, foreign_key="payout.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PayoutBatch(SQLModel, table=True):
    __tablename__ = "payout_batch"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default=PayoutBatchStatus.DRAFT, index=True)
    key: str | None = Field(default=None, unique=True)  # one batch per period end: two workers build it once
    period_end: datetime = Field(sa_type=UTCDateTime)
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    approved_by: str | None = None
    decision_note: str | None = None
    flow_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Payout(SQLModel, table=True):
    # A batch's payouts by partner: attaching the batch's commissions looks each partner's payout up by it.
    __table_args__ = (Index("ix_payout_batch_partner", "batch_id", "partner_id"),)

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = Field(foreign_key="payout_batch.id", index=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    rail: str
    idempotency_key: str = Field(unique=True)  # "payout:{id}" — also sent to the provider
    status: str = Field(default=PayoutStatus.PENDING, index=True)
    provider_ref: str | None = None
    attempts: int = 0
    claim_token: str | None = Field(default=None, index=True)  # which worker's claim won (compare-and-set)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When the rail was first called for it: a provider that dedupes a key only for a while (PayPal: 30 days)
    # must not be sent the payout again once that window is over.
    first_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The FX rates used, {"EUR/USD": "1.0850"}: the partner's statement shows them.
    fx_rates: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConversionSource(SQLModel, table=True):
    """A system allowed to post conversions (shop, billing, CSV); its API key is stored only as a keyed hash."""

    __tablename__ = "conversion_source"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    api_key_hash: str = Field(unique=True)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FxRate(SQLModel, table=True):
    """1 `base` = `rate` `quote` on `day`. Entered by people (no network); the latest rate on or before
    a payout's period end is used and stored with the payout."""

    __tablename__ = "fx_rate"
    __table_args__ = (UniqueConstraint("day", "base", "quote", name="uq_fx_rate_day_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(index=True)
    base: str
    quote: str
    rate: str  # a Decimal as text: never a float


class SepaFileEntry(SQLModel, table=True):
    """Which SEPA payment (EndToEndId) went into which bank file: our record, not the folder's.

    Written before the file is (file_name empty), completed once the rail named the file. A payment
    with an entry is never put into another file, even after its file was archived or moved away.
    """

    __tablename__ = "sepa_file_entry"

    id: int | None = Field(default=None, primary_key=True)
    end_to_end_id: str = Field(unique=True)
    payout_id: int = Field(foreign_key="payout.id", index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    file_name: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    filed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Installation(SQLModel, table=True):
    """One row: this installation's random namespace, part of every new payout key, so two installations
    that share a Stripe or PayPal account never send the same key. Made by migration 0005 (and on first
    use in a database built otherwise)."""

    id: int = Field(default=1, primary_key=True)
    namespace: str = Field(unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
