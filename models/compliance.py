"""Tables: compliance — findings, sanctions screenings, sanctions list versions, promotional pages."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from partnerflow.models.types import UTCDateTime, utcnow


class FindingStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"  # a person saw it and acted (hold, suspend, notify); still unresolved
    RESOLVED = "resolved"  # the problem is gone (a fixed page) or a person closed it
    DISMISSED = "dismissed"  # a person decided it is not a problem (reason required)


ACTIVE_STATUSES = (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED)  # still to be dealt with; may hold payouts


class FindingKind(StrEnum):
    DISCLOSURE = "disclosure"
    BRAND_RULE = "brand_rule"
    COULD_NOT_CHECK = "could_not_check"
    SANCTIONS = "sanctions"
    FRAUD = "fraud"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITIES = tuple(Severity)  # in rising order


class PageResult(StrEnum):
    """A page's last check: OK, or COULD_NOT_CHECK followed by ":<reason>"."""

    OK = "ok"
    COULD_NOT_CHECK = "could_not_check"


class FindingAction(StrEnum):
    """What a person (or the policy) can do about findings."""

    WITHHOLD_PAYOUTS = "withhold_payouts"
    SUSPEND_PARTNER = "suspend_partner"
    NOTIFY_PARTNER = "notify_partner"
    DISMISS = "dismiss"
    RESOLVE = "resolve"


class ScreeningResult(StrEnum):
    """The outcome of screening a name; only MATCH and CLEAR are stored on a SanctionsScreening."""

    MATCH = "match"
    CLEAR = "clear"
    NOT_CONFIGURED = "not_configured"  # no list is configured
    UNAVAILABLE = "unavailable"  # the list could not be read: not screened, never clear


class Finding(SQLModel, table=True):
    """One compliance problem of one partner. Re-running a check finds the row by fingerprint.

    `active_fingerprint` equals `fingerprint` while the finding is open or acknowledged and is NULL
    afterwards: its unique constraint means two runs can never open the same finding twice.
    """

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    kind: str = Field(index=True)  # a FindingKind
    rule: str  # e.g. "disclosure.missing", "claims.income", "fraud.self_referral", "fetch.timeout"
    severity: str = Field(index=True)  # a Severity
    title: str = ""
    url: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=FindingStatus.OPEN, index=True)  # a FindingStatus
    status_reason: str | None = None
    owner: str | None = None
    blocking: bool = False  # holds the partner's payouts while open/acknowledged
    fingerprint: str = Field(index=True)  # the slot: partner + rule + url
    active_fingerprint: str | None = Field(default=None, unique=True)
    # What exactly was seen (e.g. which conversions): a dismissed finding stays dismissed only while
    # the same thing is seen again; something new in the same slot opens a new finding.
    detail_hash: str = ""
    decided_by: str | None = None  # the person (or "policy") who last acted on it
    notified_message_id: int | None = None
    flow_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SanctionsListVersion(SQLModel, table=True):
    """Each distinct sanctions list file we have loaded, by checksum."""

    __tablename__ = "sanctions_list_version"

    id: int | None = Field(default=None, primary_key=True)
    checksum: str = Field(unique=True)  # sha256 of the SDN file (and ALT file when given)
    source: str
    list_date: str | None = None  # the publication date when the file says it, else the load date
    entries: int = 0
    loaded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SanctionsScreening(SQLModel, table=True):
    """Every screening of one partner against one list version; never updated."""

    __tablename__ = "sanctions_screening"
    __table_args__ = (UniqueConstraint("partner_id", "list_checksum", "subject_key",
                                       name="uq_sanctions_screening_partner_list_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    subject_key: str  # normalised "name|country" screened: a renamed partner is screened again
    name: str
    country: str = ""
    list_checksum: str = Field(index=True)
    list_date: str | None = None
    result: str  # ScreeningResult.MATCH or CLEAR
    matches: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    screened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PartnerPage(SQLModel, table=True):
    """A partner's registered promotional page, checked for disclosure and brand rules."""

    __tablename__ = "partner_page"
    __table_args__ = (UniqueConstraint("partner_id", "url", name="uq_partner_page_partner_url"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    url: str
    active: bool = True
    last_checked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_result: str | None = None  # PageResult.OK, or "could_not_check:<reason>"
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ComplianceRun(SQLModel, table=True):
    """One run of the compliance checks: what it covered and what changed (the report's source)."""

    __tablename__ = "compliance_run"

    id: int | None = Field(default=None, primary_key=True)
    scope: str = "all"  # all | partner:<id> | sanctions
    flow_run_id: str | None = None
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
