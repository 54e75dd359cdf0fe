"""Tier rules: evaluate the program policy's tier rules with SQL aggregates, propose changes with their evidence,
record a person's (or the policy's) decision.

Evaluated for the last complete month: one aggregate per month (net sales) and one per conversion window,
then the rules in order per partner; the first rule that applies to the partner's current tier and holds
proposes a change. A proposal is a TierChange row keyed "tier:{partner}:{period}", so a re-run proposes nothing
twice, and a partner with a change still open (proposed, approved, out for signature) gets no other.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from partnerflow.models import Partner, Stage, audit, session_scope, utcnow
from partnerflow.models.growth import TierChange, TierChangeStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.growth.bonuses import complete_months
from partnerflow.tasks.growth.performance import Performance, last_day, performance
from partnerflow.tasks.growth.policy import TierRule, tier_order, tier_rules
from partnerflow.tasks.payouts.balances import fx_lookup
from partnerflow.tasks.shared.markdown import md_text
from partnerflow.tasks.shared.money import format_money
from partnerflow.tasks.shared.terms import CommissionTerms, default_for, terms_for_partner

OPEN = (TierChangeStatus.PROPOSED, TierChangeStatus.APPROVED, TierChangeStatus.SENT)
ELIGIBLE_STAGES = (Stage.ACTIVE, Stage.DORMANT)


class TierDecision(RunInput):
    """The approval form: approve every proposed change except the partners left out, or reject them all."""

    decision: Literal["approve", "reject"]
    exclude_partner_ids: list[int] = Field([], description="Partners whose change is left out (nothing changes).")
    note: str = ""
    approver: str = Field(min_length=1, description="Your name: who decided.")


def headline_rate(terms: CommissionTerms) -> Decimal | None:
    """The rate a partner reads first: the percentage, or the top tier's; flat terms have none."""
    if terms.kind in ("percentage", "flat_plus_percentage"):
        return terms.rate
    if terms.kind == "tiered":
        return max(t.rate for t in terms.tiers)
    return None


def evaluate(now: datetime | None = None, rules: list[TierRule] | None = None) -> list[dict[str, Any]]:
    """Changes the rules call for, for the last complete month; each with its evidence. Read-only."""
    now = now or utcnow()
    rules = tier_rules() if rules is None else rules
    if not rules:
        return []
    order = tier_order()
    period, _start, end = complete_months(now, 1)[0]
    months = complete_months(now, max((r.months for r in rules if r.revenue_at_least_minor is not None),
                                      default=1))
    windows = sorted({r.days for r in rules if r.conversions_below is not None})
    with session_scope() as session:
        fx = fx_lookup(session)
        by_month = {p: (performance(session, s, e), e) for p, s, e in months}
        by_window = {d: performance(session, end - timedelta(days=d), end) for d in windows}
        open_ids = set(session.execute(select(TierChange.partner_id).where(TierChange.status.in_(OPEN))).scalars())
        tiers_named = {t for r in rules for t in (r.tiers or order)}
        partners = session.execute(select(Partner.id, Partner.legal_name, Partner.partner_type, Partner.tier,
                                          Partner.commission_terms)
                                   .where(Partner.stage.in_(ELIGIBLE_STAGES), Partner.tier.in_(tiers_named))
                                   .order_by(Partner.id)).all()
        proposals = []
        for pid, name, partner_type, tier, terms_json in partners:
            if pid in open_ids:
                continue
            for rule in rules:
                if rule.to_tier == tier or not rule.applies_to(partner_type, tier):
                    continue
                evidence = _holds(rule, pid, by_month, by_window, fx)
                if evidence is None:
                    continue
                proposals.append(_proposal(pid, name, partner_type, tier, terms_json, rule, evidence, period, order))
                break
    return proposals


def _holds(rule: TierRule, pid: int, by_month: dict[str, tuple[dict[int, Performance], datetime]],
           by_window: dict[int, dict[int, Performance]], fx) -> dict[str, Any] | None:
    evidence: dict[str, Any] = {"currency": rule.currency}
    if rule.revenue_at_least_minor is not None:
        recent = sorted(by_month)[-rule.months:]
        sales = {}
        for period in recent:
            figures, end = by_month[period]
            sales[period] = figures[pid].sales_in(rule.currency, last_day(end), fx) if pid in figures else 0
        if any(v < rule.revenue_at_least_minor for v in sales.values()):
            return None
        evidence.update(sales_minor_by_month=sales, revenue_at_least_minor=rule.revenue_at_least_minor)
    if rule.conversions_below is not None:
        count = by_window[rule.days][pid].conversions if pid in by_window[rule.days] else 0
        if count >= rule.conversions_below:
            return None
        evidence.update(conversions=count, days=rule.days, conversions_below=rule.conversions_below)
    return evidence


def _proposal(pid: int, name: str, partner_type: str, tier: str, terms_json: dict, rule: TierRule,
              evidence: dict[str, Any], period: str, order: list[str]) -> dict[str, Any]:
    before = CommissionTerms.parse(terms_json) or default_for(partner_type, tier)
    after = default_for(partner_type, rule.to_tier)
    rate_before, rate_after = headline_rate(before), headline_rate(after)
    evidence = {**evidence, "rate_before": None if rate_before is None else str(rate_before),
                "rate_after": None if rate_after is None else str(rate_after)}
    direction = "promotion" if order.index(rule.to_tier) > order.index(tier) else "demotion"
    return {"key": f"tier:{pid}:{period}", "partner_id": pid, "partner": name, "period": period, "from_tier": tier,
            "to_tier": rule.to_tier, "direction": direction, "rule": rule.name, "evidence": evidence,
            "terms_after": after.to_json()}


def propose(proposals: list[dict[str, Any]], flow_run_id: str | None = None) -> list[int]:
    """Store the proposals not stored yet; the policy approves those whose rate moves less than the configured
    limit. Returns the ids of the changes of this evaluation that wait for a person."""
    limit = Decimal(get_settings().growth.growth_tier_auto_apply_below)
    for attempt in (1, 2):
        try:
            with session_scope() as session:
                return _store(session, proposals, limit, flow_run_id)
        except IntegrityError:  # a concurrent run stored some: read them back
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _store(session: Session, proposals: list[dict[str, Any]], limit: Decimal, flow_run_id: str | None) -> list[int]:
    keys = [p["key"] for p in proposals]
    existing = {k: (i, s) for k, i, s in session.execute(
        select(TierChange.key, TierChange.id, TierChange.status).where(TierChange.key.in_(keys)))} if keys else {}
    waiting = [i for i, s in existing.values() if s == TierChangeStatus.PROPOSED]
    for p in proposals:
        if p["key"] in existing:
            continue
        auto = _small_change(p["evidence"], limit)
        row = TierChange(key=p["key"], partner_id=p["partner_id"], period=p["period"], from_tier=p["from_tier"],
                         to_tier=p["to_tier"], direction=p["direction"], rule=p["rule"], evidence=p["evidence"],
                         terms_after=p["terms_after"], flow_run_id=flow_run_id,
                         status=TierChangeStatus.APPROVED if auto else TierChangeStatus.PROPOSED,
                         decided_by="policy" if auto else None,
                         decision_note=f"rate moves by less than {limit}" if auto else None)
        session.add(row)
        session.flush()
        audit(session, actor="policy", action="tier_change.approved" if auto else "tier_change.proposed",
              subject_type="partner", subject_id=p["partner_id"],
              details={"tier_change_id": row.id, "from": p["from_tier"], "to": p["to_tier"], "rule": p["rule"],
                       "evidence": p["evidence"]})
        if not auto:
            waiting.append(row.id)
    return sorted(waiting)


def _small_change(evidence: dict[str, Any], limit: Decimal) -> bool:
    before, after = evidence.get("rate_before"), evidence.get("rate_after")
    if limit <= 0 or before is None or after is None:
        return False
    return abs(Decimal(after) - Decimal(before)) < limit


def describe(change_ids: list[int]) -> str:
    """The Markdown above the form: every proposed change with its evidence (names escaped)."""
    with session_scope() as session:
        rows = session.execute(select(TierChange, Partner.legal_name).join(Partner, Partner.id == TierChange.partner_id)
                               .where(TierChange.id.in_(change_ids)).order_by(TierChange.partner_id)).all()
    lines = [f"## Tier changes proposed by the tier rules ({len(rows)})", "",
             "| Partner id | Partner | Change | Rule | Evidence | Rate |", "|---|---|---|---|---|---|"]
    for change, name in rows:
        rates = f"{change.evidence.get('rate_before') or 'flat'} → {change.evidence.get('rate_after') or 'flat'}"
        lines.append(f"| {change.partner_id} | {md_text(name)} | {change.from_tier} → {change.to_tier} "
                     f"({change.direction}) | {change.rule} | {_evidence_text(change.evidence)} | {rates} |")
    lines += ["", "Approve applies every change except the partner ids you list in `exclude_partner_ids`: a promotion "
              "from the partner's signature of the amendment, a demotion after the contract's notice period. "
              "Reject changes nobody's tier."]
    return "\n".join(lines)


def _evidence_text(evidence: dict[str, Any]) -> str:
    currency, parts = evidence.get("currency", "USD"), []
    for period, amount in (evidence.get("sales_minor_by_month") or {}).items():
        parts.append(f"{period}: {format_money(amount, currency)}")
    if "conversions" in evidence:
        parts.append(f"{evidence['conversions']} conversions in {evidence['days']} days")
    return "; ".join(parts) or "—"


def record_decision(change_ids: list[int], answer: TierDecision | None) -> dict[str, list[int]]:
    """Apply a person's answer to the changes still proposed; None (nobody answered) expires them."""
    excluded = set(answer.exclude_partner_ids) if answer and answer.decision == "approve" else set()
    out: dict[str, list[int]] = defaultdict(list)
    with session_scope() as session:
        rows = session.execute(select(TierChange).where(TierChange.id.in_(change_ids),
                                                        TierChange.status == TierChangeStatus.PROPOSED)).scalars()
        for change in rows:
            if answer is None:
                status = TierChangeStatus.EXPIRED
            elif answer.decision == "reject":
                status = TierChangeStatus.REJECTED
            else:
                status = TierChangeStatus.EXCLUDED if change.partner_id in excluded else TierChangeStatus.APPROVED
            done = session.execute(update(TierChange).where(TierChange.id == change.id,
                                                            TierChange.status == TierChangeStatus.PROPOSED)
                                   .values(status=status, decided_by=answer.approver if answer else "timeout",
                                           decision_note=answer.note if answer else "nobody answered in time"))
            if done.rowcount:
                out[status].append(change.id)
                audit(session, actor=answer.approver if answer else "system", action=f"tier_change.{status}",
                      subject_type="partner", subject_id=change.partner_id,
                      details={"tier_change_id": change.id, "from": change.from_tier, "to": change.to_tier,
                               "note": answer.note if answer else ""})
    return dict(out)


def expire(change_ids: str, _details: dict[str, Any]) -> None:
    """Nobody answered the tier form in time: nothing changes (the safe default)."""
    record_decision([int(i) for i in change_ids.split(",") if i], None)


def terms_from(change: TierChange, partner: Partner, effective_at: datetime) -> CommissionTerms:
    """The partner's new terms: the new tier's, effective from `effective_at`, the old ones kept for before."""
    before = terms_for_partner(partner)
    after = CommissionTerms.model_validate(change.terms_after)
    return after.model_copy(update={"effective_from": effective_at.astimezone(UTC), "previous": before})
