"""Mail delivery tables: every email we send (one row before the send) and the suppression list."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class MessageStatus(StrEnum):
    PENDING = "pending"  # intent recorded, not yet handed to the provider
    # Handed to the provider, answer not yet known (a crash, a timeout after the mail was accepted):
    # settled by the provider's events or a lookup, else failed by the sweep; never re-sent blindly.
    SENDING = "sending"
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
    attempted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the last claim for sending
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Outreach: which enrollment step this is, who sent it, and what the provider's event
    # webhook reported afterwards.
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", index=True)
    step: int | None = None
    sender_email: str | None = Field(default=None, index=True)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    clicked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Suppression(SQLModel, table=True):
    """Addresses no flow may ever mail again (bounces, spam reports, unsubscribes, manual)."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True)  # normalised by tasks.shared.identity.normalise_email
    reason: str
    source: str = ""
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
