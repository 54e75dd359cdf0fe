"""Tables: commissions & payouts area (issue 5) — conversion sources, FX rates, the ledger rail's record.

Conversion, Commission, PayoutBatch and Payout live in models/payouts.py.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


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


class LedgerTransfer(SQLModel, table=True):
    """The ledger rail's own record ("the provider's record"): one row per idempotency key, ever."""

    __tablename__ = "ledger_transfer"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    payout_id: int = Field(index=True)
    partner_id: int = Field(index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
