"""Outreach tables: sequences (one row per loaded version) and enrollments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class Sequence(SQLModel, table=True):
    """One version of a sequence file. A changed file loads as a new version; old ones stay."""

    __table_args__ = (UniqueConstraint("name", "version", name="uq_sequence_name_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    definition_hash: str = Field(index=True)
    # The whole definition including each step's template sources, so running
    # enrollments keep rendering exactly what they were enrolled with.
    definition: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"
    COMPLETED = "completed"


class StopReason(StrEnum):
    REPLY = "reply"
    SIGNUP = "signup"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    SPAM_REPORT = "spam_report"
    SUPPRESSED = "suppressed"
    MANUAL = "manual"
    FAILED = "failed"  # the address could not be mailed (permanent failure or bounce)


class Enrollment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("prospect_id", "sequence_name", name="uq_enrollment_prospect_sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    prospect_id: int = Field(foreign_key="prospect.id", index=True)
    sequence_id: int = Field(foreign_key="sequence.id", index=True)  # the version enrolled with
    sequence_name: str = Field(index=True)
    email: str = Field(index=True)  # normalised copy, for stop-by-email lookups
    current_step: int = 0  # index of the next step to send
    status: str = Field(default=EnrollmentStatus.ACTIVE, index=True)
    stop_reason: str | None = None
    next_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # A send run owns the row while claim_token is set and claimed_until is in the future.
    claim_token: str | None = Field(default=None, index=True)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
