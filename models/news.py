"""News to partners: broadcasts, who each one goes to, and each partner's program-news choices.

A broadcast's audience is fixed when the preview is shown (one `broadcast_recipient` row per partner),
so the person approving sees exactly who gets it; each recipient's mail is a Message row (kind
`news_broadcast`), whose opens and clicks the SendGrid event webhook fills in.

Program news has its own opt-out, apart from the recruitment suppression list: a partner who stops
program news still gets their contract, remittances and other mail about their own account.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class BroadcastStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"  # being sent (a re-run continues it)
    SENT = "sent"  # every recipient handled
    CANCELLED = "cancelled"  # a person said no: nothing sent
    EXPIRED = "expired"  # nobody answered in time: nothing sent


class Broadcast(SQLModel, table=True):
    """One announcement to a segment of partners."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # the run's (or the person's) name for it: running again continues it
    template: str  # templates/news/broadcast/<template>/
    subject: str
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    segment: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=BroadcastStatus.AWAITING_APPROVAL, index=True)
    audience_size: int = 0
    decided_by: str | None = None
    decision_note: str | None = None
    flow_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class BroadcastRecipient(SQLModel, table=True):
    """A partner a broadcast goes to; `message_id` once their mail is recorded."""

    __tablename__ = "broadcast_recipient"
    __table_args__ = (UniqueConstraint("broadcast_id", "partner_id", name="uq_broadcast_recipient"),)

    id: int | None = Field(default=None, primary_key=True)
    broadcast_id: int = Field(foreign_key="broadcast.id", index=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id", index=True)
    skipped: str | None = None  # why no mail went (opted out meanwhile, address bounced)


class NewsPreference(SQLModel, table=True):
    """A partner's choices; no row means the defaults (program news and the weekly email on)."""

    __tablename__ = "news_preference"

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", unique=True)
    news_opted_out_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: gets program news
    weekly_email: bool = True
    source: str = ""  # how the last change came: one-click, unsubscribe-link, portal
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
