"""Bonuses: one-off amounts per partner (a prize, goodwill), the signing bonus of a signed contract, and
performance bonuses by the program policy's bonus rules.

Each bonus is one Bonus row under a deterministic key and exactly one commission line (kind "bonus", its
reason on the line), written in the same transaction, status pending with a payable_at like the engine's. So
the lock period, the balance, the payout threshold, the batch, the rail and the remittance treat it like any
commission, and a re-run or a second worker grants nothing twice (the key is unique, so is the line's bonus).

- one-off: payable after the partner's lock period from the grant;
- signing: earned at the contract's signature, payable after the lock period (key per partner: an amendment
  repeating the terms grants nothing again);
- performance: for a complete month, once none of the partner's commissions of that month is still in its
  lock period (refunds inside it are known): its lock was served by the sales it is computed from, so it is
  payable at the next release.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import String, cast, literal, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from partnerflow.models import Commission, Contract, ContractStatus, Partner, audit, session_scope, utcnow
from partnerflow.models.growth import Bonus, BonusKind
from partnerflow.models.payouts import CommissionKind, CommissionStatus
from partnerflow.tasks.growth.performance import last_day, performance
from partnerflow.tasks.growth.policy import BonusRule, bonus_rules
from partnerflow.tasks.payouts.balances import fx_lookup
from partnerflow.tasks.payouts.commission_rules import add_months, period_of
from partnerflow.tasks.shared.money import check_currency, format_money, round_minor
from partnerflow.tasks.shared.terms import CommissionTerms, terms_for_partner

SQL_IN_CHUNK = 900
MAX_REASON = 300


def grant_bonus(*, partner_id: int, amount_minor: int, currency: str, reason: str, granted_by: str, key: str,
                kind: str = BonusKind.ONE_OFF, earned_at: datetime | None = None) -> tuple[int, bool]:
    """Grant one bonus (a prize, goodwill) under `key`; returns (bonus id, granted now). The same key again
    returns the first grant and changes nothing. Refuses a bad amount, currency, reason or partner."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise ValueError("a bonus amount is a positive whole number of minor units (e.g. 5000 = 50.00)")
    reason, granted_by, key = (reason or "").strip(), (granted_by or "").strip(), (key or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise ValueError(f"a bonus needs a reason of 1 to {MAX_REASON} characters (the partner sees it)")
    if not granted_by:
        raise ValueError("a bonus needs the name of the person granting it")
    if not key:
        raise ValueError("a bonus needs a key (e.g. contest:2026-q1:{partner}) so that it is granted once")
    grant = {"key": f"{kind}:{key}" if not key.startswith(f"{kind}:") else key, "partner_id": partner_id,
             "kind": kind, "reason": reason, "amount_minor": amount_minor, "currency": check_currency(currency),
             "earned_at": earned_at or utcnow(), "granted_by": granted_by, "evidence": {}}
    ids = record_bonuses([grant])
    return ids[grant["key"]]


def record_bonuses(grants: list[dict[str, Any]], now: datetime | None = None) -> dict[str, tuple[int, bool]]:
    """Store bonuses and their commission lines in one transaction, skipping keys already granted.
    Returns key -> (bonus id, granted now). A concurrent grant of the same key makes this read it back."""
    if not grants:
        return {}
    for attempt in (1, 2):
        try:
            with session_scope() as session:
                return _record(session, grants, now or utcnow())
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _record(session: Session, grants: list[dict[str, Any]], now: datetime) -> dict[str, tuple[int, bool]]:
    keys = [g["key"] for g in grants]
    done: dict[str, tuple[int, bool]] = {}
    for i in range(0, len(keys), SQL_IN_CHUNK):
        chunk = keys[i:i + SQL_IN_CHUNK]
        for key, bonus_id in session.execute(select(Bonus.key, Bonus.id).where(Bonus.key.in_(chunk))):
            done[key] = (bonus_id, False)
    todo = [g for g in grants if g["key"] not in done]
    partners = _partners(session, {g["partner_id"] for g in todo})
    missing = sorted({g["partner_id"] for g in todo} - set(partners))
    if missing:
        raise ValueError(f"no partner with id {missing[0]}")
    bonuses = []
    for g in todo:
        earned_at = g["earned_at"]
        fields = {k: v for k, v in g.items() if k not in ("payable_at", "period")}
        bonus = Bonus(**fields, period=g.get("period") or period_of(earned_at))
        bonuses.append((bonus, g.get("payable_at")))
        session.add(bonus)
    session.flush()
    for bonus, payable_at in bonuses:
        terms = terms_for_partner(partners[bonus.partner_id])
        session.add(Commission(
            kind=CommissionKind.BONUS, bonus_id=bonus.id, partner_id=bonus.partner_id,
            amount_minor=bonus.amount_minor, currency=bonus.currency, rule=f"{bonus.kind.replace('_', '-')} bonus",
            reason=bonus.reason, period=bonus.period, status=CommissionStatus.PENDING, created_at=now,
            payable_at=payable_at or bonus.earned_at + timedelta(days=terms.lock_days)))
        audit(session, actor=bonus.granted_by, action="bonus.granted", subject_type="partner",
              subject_id=bonus.partner_id, details={"bonus_id": bonus.id, "key": bonus.key, "kind": bonus.kind,
                                                    "amount_minor": bonus.amount_minor, "currency": bonus.currency,
                                                    "reason": bonus.reason, "evidence": bonus.evidence})
        done[bonus.key] = (bonus.id, True)
    return done


def _partners(session: Session, ids: set[int]) -> dict[int, Partner]:
    found: dict[int, Partner] = {}
    ordered = sorted(ids)
    for i in range(0, len(ordered), SQL_IN_CHUNK):
        for p in session.execute(select(Partner).where(Partner.id.in_(ordered[i:i + SQL_IN_CHUNK]))).scalars():
            found[p.id] = p
    return found


# --- signing bonuses --------------------------------------------------------------------------

def signing_bonus_grants(session: Session) -> list[dict[str, Any]]:
    """Signed contracts whose terms carry a signing bonus, for partners not granted one yet (earliest first)."""
    key = literal("signing:partner:") + cast(Contract.partner_id, String)
    bonus_terms = Contract.__table__.c.commission_terms["signing_bonus_minor"].as_integer()
    rows = session.execute(
        select(Contract.id, Contract.partner_id, Contract.signed_at, Contract.commission_terms)
        .outerjoin(Bonus, Bonus.key == key)
        .where(Contract.status == ContractStatus.SIGNED, Contract.signed_at.is_not(None), Bonus.id.is_(None),
               bonus_terms > 0)
        .order_by(Contract.signed_at, Contract.id)).all()
    grants: dict[int, dict[str, Any]] = {}
    for contract_id, partner_id, signed_at, terms_json in rows:
        if partner_id in grants:
            continue
        terms = CommissionTerms.model_validate(terms_json)
        grants[partner_id] = {
            "key": f"signing:partner:{partner_id}", "partner_id": partner_id, "kind": BonusKind.SIGNING,
            "reason": f"Signing bonus of contract {contract_id}", "amount_minor": terms.signing_bonus_minor,
            "currency": terms.currency, "earned_at": signed_at, "granted_by": "contract",
            "evidence": {"contract_id": contract_id},
            "payable_at": signed_at + timedelta(days=terms.lock_days)}
    return list(grants.values())


# --- performance bonuses ----------------------------------------------------------------------

def complete_months(now: datetime, back: int) -> list[tuple[str, datetime, datetime]]:
    """The last `back` complete calendar months (UTC) before `now`: (period, start, end), oldest first."""
    this_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    months = []
    for n in range(back, 0, -1):
        start = add_months(this_month, -n)
        months.append((period_of(start), start, add_months(start, 1)))
    return months


def bonus_amount(rule: BonusRule, sales_minor: int) -> int:
    """The rule's bonus on a month's net sales (in the rule's currency), rounded once, half-even."""
    if sales_minor < rule.threshold_minor or (rule.basis == "excess" and sales_minor == rule.threshold_minor):
        return 0
    base = sales_minor - rule.threshold_minor if rule.basis == "excess" else sales_minor
    with localcontext() as ctx:
        ctx.prec = 50
        return round_minor(Decimal(base) * rule.rate)


def performance_bonus_grants(session: Session, now: datetime, months_back: int,
                             rules: list[BonusRule] | None = None) -> list[dict[str, Any]]:
    """Bonuses earned by the bonus rules in the last complete months and not granted yet."""
    rules = bonus_rules() if rules is None else rules
    if not rules:
        return []
    fx = fx_lookup(session)
    grants: list[dict[str, Any]] = []
    for period, start, end in complete_months(now, months_back):
        figures = performance(session, start, end)
        if not figures:
            continue
        still_locked = set(session.execute(
            select(Commission.partner_id).where(Commission.kind == CommissionKind.CONVERSION,
                                                Commission.status == CommissionStatus.PENDING,
                                                Commission.period == period).distinct()).scalars())
        partners = _partners(session, set(figures) - still_locked)
        for rule in rules:
            for pid, partner in partners.items():
                if not rule.applies_to(partner.partner_type, partner.tier):
                    continue
                sales = figures[pid].sales_in(rule.currency, last_day(end), fx)
                amount = bonus_amount(rule, sales)
                if amount <= 0:
                    continue
                reason = rule.reason or _reason(rule, period)
                grants.append({
                    "key": f"performance:{rule.name}:{pid}:{period}", "partner_id": pid,
                    "kind": BonusKind.PERFORMANCE, "reason": reason, "amount_minor": amount,
                    "currency": rule.currency, "earned_at": now, "period": period, "granted_by": "policy",
                    "evidence": {"rule": rule.name, "period": period, "sales_minor": sales,
                                 "threshold_minor": rule.threshold_minor, "rate": str(rule.rate),
                                 **figures[pid].evidence()},
                    "payable_at": now})
    return grants


def _reason(rule: BonusRule, period: str) -> str:
    pct = format((rule.rate * 100).normalize(), "f")
    threshold = format_money(rule.threshold_minor, rule.currency)
    part = "of sales above" if rule.basis == "excess" else "of all sales on reaching"
    return f"Performance bonus {period}: {pct}% {part} {threshold}"


def grant_due_bonuses(now: datetime | None = None, months_back: int = 3) -> dict[str, int]:
    """Signing bonuses of signed contracts and performance bonuses of the last complete months."""
    now = now or utcnow()
    with session_scope() as session:
        signing = signing_bonus_grants(session)
        perf = performance_bonus_grants(session, now, months_back)
    granted = record_bonuses(signing + perf, now)
    new = {k for k, (_id, created) in granted.items() if created}
    return {"signing": sum(1 for g in signing if g["key"] in new),
            "performance": sum(1 for g in perf if g["key"] in new)}
