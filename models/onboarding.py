"""Onboarding tables: the partner's form link for tax form and payout details."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class TaxFormStatus(StrEnum):
    """Partner.tax_form_status: where the partner's tax form is."""

    MISSING = "missing"
    REQUESTED = "requested"  # the onboarding form link went out
    RECEIVED = "received"


class Onboarding(SQLModel, table=True):
    """One per partner: the form link (hash only) to the tax-form + payout-details page and what came back.

    The tax form's contents are encrypted (partnerflow.secrets.encrypt); only masked values are shown.
    """

    __tablename__ = "onboarding"

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", unique=True)
    token_hash: str = Field(index=True)
    tax_form_kind: str  # W-9 | W-8BEN
    tax_form_encrypted: str | None = None
    tax_form_masked: str | None = None  # e.g. "W-9, TIN •••••6789"
    expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # When the link was used: it is single-use, a second submission is refused until the team reopens it.
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set when a submission replaced payout details we already had: the partner's payouts are held
    # (tasks/compliance/blockers.py) until a person confirms the change.
    payout_hold_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    payout_confirmed_by: str | None = None
    payout_confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    nudged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # activation nudge sent
    dormant_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
