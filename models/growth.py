"""Growth tables: bonuses granted to partners and tier changes proposed by the tier rules.

A bonus becomes exactly one commission line (Commission.kind "bonus", Commission.bonus_id unique), so it
goes through the same lock period, balance, payout batch and remittance as any commission. Its `key` makes
granting idempotent: a re-run or a second worker finds the row and grants nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class BonusKind(StrEnum):
    ONE_OFF = "one_off"  # granted by a person (contest prize, goodwill)
    SIGNING = "signing"  # written into the signed contract's terms
    PERFORMANCE = "performance"  # earned by a bonus rule of the program policy


class Bonus(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # e.g. "signing:contract:7", "performance:volume-2pct:3:2026-01"
    partner_id: int = Field(foreign_key="partner.id", index=True)
    kind: str = BonusKind.ONE_OFF
    reason: str
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    period: str = ""  # "YYYY-MM" the bonus belongs to
    earned_at: datetime = Field(sa_type=UTCDateTime)  # the lock period runs from here
    granted_by: str
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TierChangeStatus(StrEnum):
    PROPOSED = "proposed"  # waiting for a person's decision
    APPROVED = "approved"  # by a person or by policy; amendment to be sent
    REJECTED = "rejected"
    EXCLUDED = "excluded"  # left out by the approver
    EXPIRED = "expired"  # nobody decided in time
    SENT = "sent"  # amendment out for signature
    APPLIED = "applied"  # the partner's tier and terms changed


class TierChange(SQLModel, table=True):
    __tablename__ = "tier_change"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # "tier:{partner}:{period}": one proposal per partner and evaluation
    partner_id: int = Field(foreign_key="partner.id", index=True)
    period: str  # the month the rules were evaluated for ("YYYY-MM", the last complete month)
    from_tier: str
    to_tier: str
    direction: str  # promotion | demotion
    rule: str  # the policy rule's name
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    terms_after: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=TierChangeStatus.PROPOSED, index=True)
    decided_by: str | None = None
    decision_note: str | None = None
    flow_run_id: str | None = None
    contract_id: int | None = Field(default=None, foreign_key="contract.id")  # the amendment
    effective_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # a demotion's date (notice)
    applied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
