"""Questions put to a person in the Prefect UI: one row per question, kept after it is answered.

The row is what makes a waiting approval survive anything that happens to Prefect: the
timeout sweep finds overdue questions here (not in Prefect's run history) and applies the
stage's safe default; `partnerflow status` counts what is waiting and for how long.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class ApprovalStatus(StrEnum):
    WAITING = "waiting"
    ANSWERED = "answered"
    EXPIRED = "expired"  # nobody answered in time; the stage's safe default was applied


class ApprovalRequest(SQLModel, table=True):
    __tablename__ = "approval_request"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # the question's identity: asking again under it is not a new question
    subject_type: str = Field(index=True)  # "application", "payout_batch", "partner_findings"
    subject_id: str = Field(index=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    flow_run_id: str | None = None
    status: str = Field(default=ApprovalStatus.WAITING, index=True)
    asked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    answered_by: str | None = None
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
