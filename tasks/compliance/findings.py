"""Recording findings without duplicates, resolving the ones that went away, and acting on them.

A check produces `Detected` items. `record()` turns them into Finding rows:
- an open/acknowledged finding in the same slot (partner + rule + url) is updated, never duplicated
  (the unique `active_fingerprint` makes this hold even for two concurrent runs);
- a dismissed finding that saw exactly the same thing (`detail_hash`) keeps it dismissed;
- otherwise a new finding opens.
`resolve_missing()` closes active findings of a checked scope that were not seen again (a fixed page).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models import session_scope
from partnerflow.models.audit import audit, current_flow_run_id
from partnerflow.models.compliance import ACTIVE_STATUSES, SEVERITIES, Finding, FindingKind, FindingStatus
from partnerflow.models.partners import Partner, Stage
from partnerflow.models.types import utcnow

SYSTEM = "system"  # the actor for what the checks do by themselves
POLICY = "policy"  # the actor for the policy's automatic actions (never acknowledges a finding)
ANY_ACTIVE, ANY = "active", "all"  # status filters of list_findings besides a FindingStatus


@dataclass
class Detected:
    partner_id: int
    kind: FindingKind
    rule: str
    severity: str
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    detail: Any = None  # what exactly was seen; defaults to rule + url

    @property
    def fingerprint(self) -> str:
        return f"{self.partner_id}|{self.rule}|{self.url or ''}"

    @property
    def detail_hash(self) -> str:
        raw = json.dumps(self.detail if self.detail is not None else [self.rule, self.url], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass
class RecordOutcome:
    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)  # seen again but dismissed by a person
    resolved: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        return {"opened": self.opened, "updated": self.updated, "suppressed": self.suppressed,
                "resolved": self.resolved}


def _active(session: Session, fingerprint: str) -> Finding | None:
    return session.exec(select(Finding).where(Finding.active_fingerprint == fingerprint)).first()


def record(session: Session, detected: list[Detected], policy: dict, out: RecordOutcome | None = None) -> RecordOutcome:
    """Upsert `detected` into Finding rows (commits as it goes so a concurrent run sees them)."""
    out = out or RecordOutcome()
    actions = policy.get("actions", {})
    blocking_kinds = set(actions.get("blocking_kinds", []))
    blocking_rules = set(actions.get("blocking_rules", []))
    now = utcnow()
    run_id = current_flow_run_id()
    for d in detected:
        row = _active(session, d.fingerprint)
        if row is None:
            dismissed = session.exec(
                select(Finding.id).where(Finding.fingerprint == d.fingerprint, Finding.detail_hash == d.detail_hash,
                                         Finding.status == FindingStatus.DISMISSED)).first()
            if dismissed:
                out.suppressed.append(dismissed)
                continue
            row = Finding(partner_id=d.partner_id, kind=d.kind, rule=d.rule, severity=d.severity, title=d.title,
                          url=d.url, evidence=d.evidence, fingerprint=d.fingerprint,
                          active_fingerprint=d.fingerprint, detail_hash=d.detail_hash,
                          blocking=d.kind in blocking_kinds or d.rule in blocking_rules, flow_run_id=run_id)
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # another run opened it a moment ago: update that one instead
                session.rollback()
                row = _active(session, d.fingerprint)
                if row is None:
                    raise
            else:
                audit(session, actor=SYSTEM, action="finding.opened", subject_type="finding", subject_id=row.id,
                      details={"partner_id": d.partner_id, "rule": d.rule, "severity": d.severity, "url": d.url})
                session.commit()
                out.opened.append(row.id)
                continue
        row.evidence = d.evidence
        row.title = d.title
        row.detail_hash = d.detail_hash
        if _rank(d.severity) > _rank(row.severity):
            row.severity = d.severity
        row.last_seen_at = now
        row.updated_at = now
        session.add(row)
        session.commit()
        out.updated.append(row.id)
    return out


def resolve_missing(session: Session, partner_id: int, *, kinds: tuple[str, ...], url: str | None,
                    seen: set[str], reason: str, out: RecordOutcome | None = None) -> RecordOutcome:
    """Resolve active findings of `partner_id` with a kind in `kinds` (and this `url` when given) not in `seen`."""
    out = out or RecordOutcome()
    query = select(Finding).where(Finding.partner_id == partner_id, Finding.kind.in_(kinds),
                                  Finding.status.in_(ACTIVE_STATUSES))
    if url is not None:
        query = query.where(Finding.url == url)
    for row in session.exec(query).all():
        if row.fingerprint in seen:
            continue
        close(session, row, FindingStatus.RESOLVED, reason=reason, actor=SYSTEM)
        out.resolved.append(row.id)
    session.commit()
    return out


def close(session: Session, row: Finding, status: FindingStatus, *, reason: str, actor: str) -> None:
    """Resolve or dismiss a finding (frees its slot and releases any payout hold it caused)."""
    now = utcnow()
    row.status = status
    row.status_reason = reason
    row.active_fingerprint = None
    row.closed_at = now
    row.updated_at = now
    row.decided_by = actor if actor != SYSTEM else row.decided_by
    session.add(row)
    audit(session, actor=actor, action=f"finding.{status}", subject_type="finding", subject_id=row.id,
          details={"partner_id": row.partner_id, "rule": row.rule, "reason": reason})


def withhold(session: Session, row: Finding, *, actor: str, reason: str = "") -> None:
    row.blocking = True
    _acknowledge(session, row, actor, "finding.withhold_payouts", reason)


def suspend_partner(session: Session, row: Finding, *, actor: str, reason: str = "") -> None:
    partner = session.get(Partner, row.partner_id)
    if partner and partner.stage != Stage.SUSPENDED:
        before = partner.stage
        partner.stage = Stage.SUSPENDED
        partner.updated_at = utcnow()
        session.add(partner)
        audit(session, actor=actor, action="partner.suspended", subject_type="partner", subject_id=partner.id,
              details={"from": before, "finding_id": row.id, "reason": reason})
    row.blocking = True
    _acknowledge(session, row, actor, "finding.suspend_partner", reason)


def _acknowledge(session: Session, row: Finding, actor: str, action: str, reason: str) -> None:
    if row.status == FindingStatus.OPEN and actor != POLICY:  # only a person acknowledges
        row.status = FindingStatus.ACKNOWLEDGED
    row.owner = row.owner or (actor if actor != POLICY else None)
    row.decided_by = actor
    row.status_reason = reason or row.status_reason
    row.updated_at = utcnow()
    session.add(row)
    audit(session, actor=actor, action=action, subject_type="finding", subject_id=row.id,
          details={"partner_id": row.partner_id, "rule": row.rule, "reason": reason})


def mark_notified(session: Session, row: Finding, *, actor: str, message_id: int | None) -> None:
    row.notified_message_id = message_id
    _acknowledge(session, row, actor, "finding.notify_partner", "partner asked to fix")


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def list_findings(status: str = ANY_ACTIVE, partner_id: int | None = None) -> list[Finding]:
    """Findings newest first: `status` is a FindingStatus, ANY_ACTIVE (open or acknowledged) or ANY."""
    query = select(Finding).order_by(Finding.id.desc())
    if status == ANY_ACTIVE:
        query = query.where(Finding.status.in_(ACTIVE_STATUSES))
    elif status != ANY:
        query = query.where(Finding.status == status)
    if partner_id is not None:
        query = query.where(Finding.partner_id == partner_id)
    with session_scope() as session:
        return list(session.exec(query).all())
