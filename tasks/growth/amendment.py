"""Approved tier changes: the amendment (python-docx, from templates/growth/amendment_clauses.yaml) sent for
signature like the original contract, then the change applied — a promotion from the partner's signature, a
demotion at the end of the contract's notice period whether or not it is signed. The partner is told by mail
(one key per change and step) and every step is audited.

The amendment is a Contract row of its own (next version, the new terms on it). Generating it and linking it
to the change happen in one transaction under a compare-and-set, so a re-run never makes a second one; the
signature request is the contracting stage's (`request_signature`, once per contract).
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import yaml
from docx import Document
from sqlalchemy import func, select, update

from partnerflow.models import Contract, ContractStatus, Partner, audit, session_scope, utcnow
from partnerflow.models.growth import TierChange, TierChangeStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.documents import ContractFieldMissing
from partnerflow.tasks.contracting.signing import request_signature
from partnerflow.tasks.growth.tiers import terms_from
from partnerflow.tasks.shared.mail import deliver
from partnerflow.tasks.shared.terms import CommissionTerms

FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")
TEMPLATE = "growth/amendment_clauses.yaml"


@functools.lru_cache(maxsize=1)
def _clauses_text() -> str:
    return resources.files("partnerflow.templates").joinpath(TEMPLATE).read_text()


def render_amendment(fields: dict[str, str]) -> bytes:
    """The amendment as .docx bytes; every merge field must have a value (ContractFieldMissing otherwise)."""
    library = yaml.safe_load(_clauses_text())

    def fill(text: str, where: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if not fields.get(name):
                raise ContractFieldMissing(name, where)
            return fields[name]
        return FIELD.sub(value, " ".join(text.split()))

    doc = Document()
    doc.add_heading(fill(library["title"], "title"), level=0)
    for clause in library["clauses"]:
        doc.add_heading(fill(clause["heading"], clause["heading"]), level=1)
        doc.add_paragraph(fill(clause["text"], clause["heading"]))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _effective_text(change: TierChange, effective_at: datetime | None) -> str:
    if change.direction == "promotion":
        return "The new tier and commission terms apply from the Partner's signature of this amendment."
    return (f"The new tier and commission terms apply on {effective_at:%Y-%m-%d}, at the end of the Agreement's "
            "notice period, whether or not this amendment is signed.")


def _reason(change: TierChange) -> str:
    evidence = change.evidence or {}
    if "sales_minor_by_month" in evidence:
        months = ", ".join(evidence["sales_minor_by_month"])
        return f"rule {change.rule}: net sales at or above the threshold in {months}"
    if "conversions" in evidence:
        return (f"rule {change.rule}: {evidence['conversions']} conversions in the last {evidence['days']} days, "
                f"fewer than {evidence['conversions_below']}")
    return f"rule {change.rule}"


def prepare_amendments(now: datetime | None = None) -> list[int]:
    """An amendment contract for every approved change without one; returns their contract ids (to send)."""
    now = now or utcnow()
    settings = get_settings()
    made: list[int] = []
    with session_scope() as session:
        ids = list(session.execute(select(TierChange.id).where(TierChange.status == TierChangeStatus.APPROVED,
                                                               TierChange.contract_id.is_(None))).scalars())
    for change_id in ids:
        with session_scope() as session:
            change = session.get(TierChange, change_id)
            if change.contract_id is not None:
                continue
            partner = session.get(Partner, change.partner_id)
            effective_at = None if change.direction == "promotion" else \
                now + timedelta(days=settings.growth.growth_notice_days)
            terms = CommissionTerms.model_validate(change.terms_after)
            version = session.execute(select(func.count(Contract.id))
                                      .where(Contract.partner_id == partner.id)).scalar_one() + 1
            document = render_amendment({
                "contract_version": str(version), "company_name": settings.company_name,
                "legal_name": partner.legal_name, "contact_name": partner.contact_name or partner.legal_name,
                "from_tier": change.from_tier, "to_tier": change.to_tier, "reason": _reason(change),
                "commission_terms": terms.describe(), "effective": _effective_text(change, effective_at)})
            digest = hashlib.sha256(document).hexdigest()
            relative = f"contracts/partner-{partner.id}-v{version}-amendment-{digest[:12]}.docx"
            path = settings.documents_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(document)
            contract = Contract(partner_id=partner.id, version=version, template_name=TEMPLATE,
                                template_sha256=hashlib.sha256(_clauses_text().encode()).hexdigest(),
                                document_path=relative, document_sha256=digest, commission_terms=terms.to_json())
            session.add(contract)
            session.flush()
            linked = session.execute(update(TierChange).where(TierChange.id == change_id,
                                                              TierChange.contract_id.is_(None))
                                     .values(contract_id=contract.id, status=TierChangeStatus.SENT,
                                             effective_at=effective_at))
            if not linked.rowcount:  # another run linked one first: this transaction (and its row) is undone
                session.rollback()
                continue
            audit(session, actor="system", action="tier_change.amendment_generated", subject_type="partner",
                  subject_id=partner.id, details={"tier_change_id": change_id, "contract_id": contract.id,
                                                  "document_sha256": digest, "effective_at": str(effective_at)})
            made.append(contract.id)
    return made


def send_amendments(contract_ids: list[int] | None = None) -> int:
    """Request the signature of every amendment out for signature (once per contract) and tell the partner."""
    with session_scope() as session:
        q = select(TierChange.id, TierChange.contract_id).where(TierChange.status == TierChangeStatus.SENT)
        if contract_ids is not None:
            q = q.where(TierChange.contract_id.in_(contract_ids))
        rows = session.execute(q.join(Contract, Contract.id == TierChange.contract_id)
                               .where(Contract.status == ContractStatus.GENERATED)).all()
    for change_id, contract_id in rows:
        request_signature(contract_id)
        notify(change_id, applied=False)
    return len(rows)


def apply_due_changes(now: datetime | None = None) -> list[int]:
    """Apply promotions whose amendment is signed (from the signature) and demotions whose notice period is
    over (from its end, signed or not). Returns the ids applied."""
    now = now or utcnow()
    with session_scope() as session:
        signed = session.execute(
            select(TierChange.id, Contract.signed_at).join(Contract, Contract.id == TierChange.contract_id)
            .where(TierChange.status == TierChangeStatus.SENT, TierChange.direction == "promotion",
                   Contract.status == ContractStatus.SIGNED, Contract.signed_at.is_not(None))).all()
        due = session.execute(
            select(TierChange.id, TierChange.effective_at)
            .where(TierChange.status == TierChangeStatus.SENT, TierChange.direction == "demotion",
                   TierChange.effective_at <= now)).all()
    applied = []
    for change_id, effective_at in [*signed, *due]:
        if _apply(change_id, effective_at, now):
            applied.append(change_id)
            notify(change_id, applied=True)
    _close_unsigned_promotions(now)
    return applied


def _close_unsigned_promotions(now: datetime) -> None:
    """A promotion whose amendment expired or was voided unsigned never applies; closing it lets the next
    evaluation propose again."""
    with session_scope() as session:
        lapsed = session.execute(
            select(TierChange.id, TierChange.partner_id, Contract.status)
            .join(Contract, Contract.id == TierChange.contract_id)
            .where(TierChange.status == TierChangeStatus.SENT, TierChange.direction == "promotion",
                   Contract.status.in_((ContractStatus.EXPIRED, ContractStatus.VOIDED)))).all()
        for change_id, partner_id, contract_status in lapsed:
            closed = session.execute(update(TierChange).where(TierChange.id == change_id,
                                                              TierChange.status == TierChangeStatus.SENT)
                                     .values(status=TierChangeStatus.EXPIRED, applied_at=None,
                                             decision_note=f"amendment {contract_status} unsigned"))
            if closed.rowcount:
                audit(session, actor="system", action="tier_change.expired", subject_type="partner",
                      subject_id=partner_id, details={"tier_change_id": change_id, "contract": contract_status,
                                                      "at": now.isoformat()})


def _apply(change_id: int, effective_at: datetime, now: datetime) -> bool:
    with session_scope() as session:
        done = session.execute(update(TierChange).where(TierChange.id == change_id,
                                                        TierChange.status == TierChangeStatus.SENT)
                               .values(status=TierChangeStatus.APPLIED, applied_at=now, effective_at=effective_at))
        if not done.rowcount:
            return False
        change = session.get(TierChange, change_id)
        partner = session.get(Partner, change.partner_id)
        terms = terms_from(change, partner, effective_at)
        partner.tier, partner.commission_terms, partner.updated_at = change.to_tier, terms.to_json(), now
        if terms.payout_threshold_minor is not None:
            partner.payout_threshold_minor = terms.payout_threshold_minor
        session.add(partner)
        audit(session, actor="system", action="tier_change.applied", subject_type="partner", subject_id=partner.id,
              details={"tier_change_id": change_id, "from": change.from_tier, "to": change.to_tier,
                       "effective_from": effective_at.isoformat(), "contract_id": change.contract_id})
        return True


def notify(change_id: int, *, applied: bool) -> None:
    """The partner's mail about a change: once when it is sent for signature, once when it applies."""
    with session_scope() as session:
        change = session.get(TierChange, change_id)
        partner = session.get(Partner, change.partner_id)
        context: dict[str, Any] = {
            "name": partner.contact_name or partner.legal_name, "applied": applied, "direction": change.direction,
            "from_tier": change.from_tier, "to_tier": change.to_tier, "reason": _reason(change),
            "effective_on": f"{change.effective_at:%Y-%m-%d}" if change.effective_at else "your signature",
            "terms": CommissionTerms.model_validate(change.terms_after).describe()}
        email, partner_id = partner.email, partner.id
    step = "applied" if applied else "sent"
    deliver(f"tier-change:{change_id}:{step}", kind="tier_change", to_email=email, template="growth/tier_change",
            partner_id=partner_id, context=context)
