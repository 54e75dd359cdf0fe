"""The outbox of hand-off events: written in the same transaction as the state change they announce.

A stage that ends records its event here instead of emitting it after the commit, so a failed
emit or a crash in between cannot lose the hand-off. The relay (tasks/shared/events.py) sends
pending rows to Prefect under a fixed event id per row and marks them sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "event_outbox"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # "<event>:<resource kind>:<resource id>": one hand-off, one row
    event_id: str  # the Prefect event id (a UUID derived from `key`), the same on every re-send
    event: str  # e.g. "partner.applied"
    resource_kind: str
    resource_id: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)  # None: still to relay
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)  # one relay sends it at a time
    attempts: int = 0
    last_error: str | None = None
