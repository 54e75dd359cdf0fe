"""Discovery tables: prospects (candidate partners)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class ProspectStatus(StrEnum):
    NEW = "new"
    ENROLLED = "enrolled"
    REPLIED = "replied"
    APPLIED = "applied"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


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
    status: str = Field(default=ProspectStatus.NEW, index=True)
    score: int = 0
    score_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enrichment: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Audience size from the import (followers, monthly visitors), unmapped CSV columns kept
    # as given, and when the page was last enriched.
    audience_size: int | None = Field(default=None, sa_type=BigInteger)
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    enriched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
