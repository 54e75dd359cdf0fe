"""Prospects (candidate partners) and the emails we send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class Prospect(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, index=True, unique=True)
    name: str = ""
    company: str = ""
    website: str = ""
    domain: str = Field(default="", index=True)  # normalised, for de-duplication
    country: str = ""
    timezone: str | None = None  # IANA name, for business-hours sending
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source: str = ""  # file name or integration it came from
    status: str = Field(default="new", index=True)  # new | enrolled | replied | applied | unsubscribed | bounced
    score: int = 0
    score_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enrichment: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Discovery (A1): audience size from the import (followers, monthly visitors), unmapped CSV
    # columns kept as given, and when the page was last enriched.
    audience_size: int | None = Field(default=None, sa_type=BigInteger)
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    enriched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MessageStatus:
    PENDING = "pending"  # intent recorded, not yet handed to the provider
    SENDING = "sending"  # claimed by a worker; outcome unknown if it crashed here
    SENT = "sent"
    FAILED = "failed"  # permanent failure, reason in `error`
    BOUNCED = "bounced"


class Message(SQLModel, table=True):
    """One outbound email. The row (with its deterministic key) exists before the send."""

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)  # e.g. "outreach:enrollment:12:step:1"
    kind: str = Field(index=True)  # outreach | signing | welcome | remittance | notice | ...
    to_email: str = Field(index=True)
    subject: str = ""
    prospect_id: int | None = Field(default=None, foreign_key="prospect.id", index=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    status: str = Field(default=MessageStatus.PENDING, index=True)
    provider: str | None = None
    provider_message_id: str | None = Field(default=None, index=True)
    error: str | None = None
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Outreach (issue 3): which enrollment step this is, who sent it, and what the provider's
    # event webhook reported afterwards.
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", index=True)
    step: int | None = None
    sender_email: str | None = Field(default=None, index=True)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    clicked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
