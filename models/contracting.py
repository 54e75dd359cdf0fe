"""Contracting tables: applications, contracts and their signature requests."""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from partnerflow.models.partners import PartnerType
from partnerflow.models.types import UTCDateTime, utcnow


class ContractStatus(StrEnum):
    GENERATED = "generated"
    SENT = "sent"  # out for signature
    SIGNED = "signed"
    EXPIRED = "expired"
    VOIDED = "voided"


class Contract(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    application_id: int | None = Field(default=None, foreign_key="application.id")
    version: int = 1
    template_name: str
    template_sha256: str
    document_path: str  # relative to the documents dir
    document_sha256: str
    signed_path: str | None = None
    signed_sha256: str | None = None
    commission_terms: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=ContractStatus.GENERATED, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    signed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SignatureStatus(StrEnum):
    PENDING = "pending"  # row written, not yet at the provider
    SENT = "sent"
    SIGNED = "signed"
    EXPIRED = "expired"
    VOIDED = "voided"  # withdrawn, or declined by the signer


OPEN_SIGNATURE_STATUSES = (SignatureStatus.PENDING, SignatureStatus.SENT)


def new_signature_reference() -> str:
    """Our id for a request at the vendor: random, so two installations sharing an account never collide,
    and fixed on the row when it is made, so nothing (a key rotation) can change it between a send and
    its follow-up. Letters and digits only: vendors' search syntax matches it (a "-" can mean NOT)."""
    return "pf" + secrets.token_hex(12)


class SignatureRequest(SQLModel, table=True):
    """A request to sign one contract through one provider; created before the provider call."""

    __tablename__ = "signature_request"

    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    idempotency_key: str = Field(unique=True)  # e.g. "contract:7:sign"
    provider: str
    # NULL only on rows made before references were stored (tasks/contracting/sending.py reads those).
    reference: str | None = Field(default_factory=new_signature_reference, unique=True, index=True)
    provider_request_id: str | None = Field(default=None, index=True)
    token_hash: str | None = Field(default=None, index=True)  # builtin: keyed hash of the link token
    signer_name: str
    signer_email: str
    status: str = Field(default=SignatureStatus.PENDING, index=True)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    signed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    signed_name: str | None = None
    signed_ip: str | None = None
    signed_user_agent: str | None = None
    signed_document_sha256: str | None = None
    reminders_sent: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SignatureSendAttempt(SQLModel, table=True):
    """A SaaS send in progress or with an unknown outcome (timeout): reconciled by searching the
    provider before the request may be sent again (tasks/contracting/sending.py). One row per request."""

    __tablename__ = "signature_send_attempt"

    signature_request_id: int = Field(foreign_key="signature_request.id", primary_key=True)
    attempted_at: datetime = Field(sa_type=UTCDateTime)


class ApplicationStatus(StrEnum):
    RECEIVED = "received"
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"  # nobody decided before the approval timed out


class Application(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    email: str = Field(index=True)
    legal_name: str
    contact_name: str = ""
    country: str = ""
    website: str = ""
    domain: str = Field(default="", index=True)
    channels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    partner_type: str = PartnerType.AFFILIATE
    promotional_methods: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tax_status: str = ""
    agreed_to_terms: bool = False
    status: str = Field(default=ApplicationStatus.RECEIVED, index=True)
    screening: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    decided_by: str | None = None
    decision_note: str | None = None
    flow_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
