"""Partners: the one row per partner every stage shares."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from partnerflow.models.onboarding import TaxFormStatus
from partnerflow.models.types import UTCDateTime, utcnow


class Stage(StrEnum):
    """A partner's lifecycle stage."""

    APPLIED = "applied"
    APPROVED = "approved"
    CONTRACTING = "contracting"  # contract out for signature
    ACTIVE = "active"
    DORMANT = "dormant"
    SUSPENDED = "suspended"
    REJECTED = "rejected"


class PartnerType(StrEnum):
    AFFILIATE = "affiliate"
    INFLUENCER = "influencer"
    RESELLER = "reseller"
    REFERRAL = "referral"


class Partner(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True, unique=True)
    legal_name: str
    contact_name: str = ""
    country: str = ""  # ISO 3166-1 alpha-2
    website: str = ""
    domain: str = Field(default="", index=True)  # normalised website domain
    partner_type: str = PartnerType.AFFILIATE
    stage: str = Field(default=Stage.APPLIED, index=True)
    tier: str = "standard"
    # The commission terms as agreed in the contract; the payout engine reads these.
    commission_terms: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    tracking_code: str | None = Field(default=None, unique=True)
    coupon_code: str | None = Field(default=None, unique=True)
    payout_currency: str = "USD"
    payout_threshold_minor: int = Field(default=5000, sa_type=BigInteger)
    payout_method: str | None = None  # ledger | sepa | stripe | paypal
    payout_details_encrypted: str | None = None  # see partnerflow.secrets.encrypt
    payout_details_masked: str | None = None
    tax_form_kind: str | None = None  # W-9 | W-8BEN
    tax_form_status: str = TaxFormStatus.MISSING
    prospect_id: int | None = Field(default=None, foreign_key="prospect.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    activated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_activity_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
