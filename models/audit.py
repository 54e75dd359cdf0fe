"""Append-only audit log and the store of inbound provider webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint, event
from sqlmodel import Field, Session, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class AuditLog(SQLModel, table=True):
    """Who decided or did what, when, in which flow run. Rows are never updated or deleted."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str  # a person's name, "policy", "system", or a provider
    action: str = Field(index=True)  # e.g. "application.approved", "payout.paid"
    subject_type: str
    subject_id: str = Field(index=True)
    flow_run_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


@event.listens_for(AuditLog, "before_update")
@event.listens_for(AuditLog, "before_delete")
def _append_only(_mapper, _connection, target: AuditLog) -> None:
    raise PermissionError(f"audit_log is append-only (row {target.id})")


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: object,
    details: dict[str, Any] | None = None,
    flow_run_id: str | None = None,
) -> AuditLog:
    """Append one audit row in the caller's transaction; the current flow run is picked up by itself."""
    if flow_run_id is None:
        flow_run_id = current_flow_run_id()
    row = AuditLog(
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=details or {},
        flow_run_id=flow_run_id,
    )
    session.add(row)
    return row


def current_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
        return str(run_id) if run_id else None
    except Exception:
        return None


class WebhookEvent(SQLModel, table=True):
    """Every verified inbound callback, stored once per (provider, event id) before it is acted on."""

    __tablename__ = "webhook_event"
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_webhook_event_provider_event"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str  # sendgrid, dropbox_sign, docusign, stripe, paypal, ...
    event_id: str
    event_type: str = ""
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
