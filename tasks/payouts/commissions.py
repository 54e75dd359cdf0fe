"""Commissions from conversions: create, refresh while locked, apply reversals; and the dry run of a rule change.

The rules themselves are tasks/payouts/commission_rules.py (plain computation). Here they are fed
one partner-month at a time from the database, and the results stored:
- a conversion without a commission gets one (pending, payable after the terms' lock period);
- commissions still pending are recomputed (tiers and caps look at the whole month);
- reversals (refund, chargeback, reversal) point at an earlier conversion: the original commission
  not yet in a payout is cancelled (full refund) or reduced by a negative adjustment proportional to
  the refunded amount (partial refund); once the original is in a payout, a negative commission is
  payable at once and is carried into the next batch (a balance below zero holds the payout).
  A cancel that finds the commission taken by a batch meanwhile becomes a deduction; deductions of one
  sale never add up to more than its commission; every row is in the sale's currency (a reversal in
  another currency is converted at the rate of its day, and waits while that rate is missing).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import yaml
from sqlalchemy import and_, bindparam, func, insert, literal_column, select, update
from sqlmodel import Session

from partnerflow.models import Commission, Conversion, Partner, get_engine, session_scope, utcnow
from partnerflow.models.payouts import CommissionStatus
from partnerflow.tasks.payouts.balances import FxLookup, fx_lookup, release_locked
from partnerflow.tasks.payouts.commission_rules import (
    PAYING_KINDS,
    REVERSAL_KINDS,
    VOLUME_KINDS,
    Row,
    add_months,
    compute_period,
    period_of,
)
from partnerflow.tasks.payouts.commissions_sql import compute_in_sql, period_sql
from partnerflow.tasks.shared.money import exponent, round_minor
from partnerflow.tasks.shared.terms import CommissionTerms, default_for

PARTNER_CHUNK = 500
SQL_IN_CHUNK = 900


def _terms_of(partner_terms: dict[str, Any] | None, partner_type: str, tier: str) -> CommissionTerms:
    return CommissionTerms.parse(partner_terms) or default_for(partner_type, tier)


def _month_bounds(period: str) -> tuple[datetime, datetime]:
    year, month = int(period[:4]), int(period[5:7])
    start = datetime(year, month, 1, tzinfo=UTC)
    return start, add_months(start, 1)


def _first_purchases(session: Session, refs: set[str]) -> dict[str, tuple[datetime, int]]:
    first: dict[str, tuple[datetime, int]] = {}
    refs_list = sorted(r for r in refs if r)
    for i in range(0, len(refs_list), SQL_IN_CHUNK):
        chunk = refs_list[i:i + SQL_IN_CHUNK]
        for ref, at, cid in session.execute(
            select(Conversion.customer_ref, Conversion.occurred_at, Conversion.id)
            .where(Conversion.customer_ref.in_(chunk), Conversion.kind.in_(VOLUME_KINDS))
        ):
            if ref not in first or (at, cid) < first[ref]:
                first[ref] = (at, cid)
    return first


def _load_rows(session: Session, partner_ids: list[int], start: datetime, end: datetime) -> list[Row]:
    q = (
        select(Conversion.id, Conversion.partner_id, Conversion.kind, Conversion.amount_minor, Conversion.currency,
               Conversion.occurred_at, Conversion.customer_ref, Conversion.product, Conversion.category,
               Commission.id, Commission.amount_minor, Commission.status)
        .outerjoin(Commission, Commission.conversion_id == Conversion.id)
        .where(Conversion.partner_id.in_(partner_ids), Conversion.kind.in_(PAYING_KINDS),
               Conversion.occurred_at >= start, Conversion.occurred_at < end)
        .order_by(Conversion.partner_id, Conversion.occurred_at, Conversion.id)
    )
    return [Row(*values) for values in session.execute(q)]


def compute_commissions(now: datetime | None = None, *, partner_ids: list[int] | None = None,
                        engine: str = "sql") -> dict[str, Any]:
    """Create or refresh commissions for every attributed conversion; apply reversals; release locks.

    `engine="sql"` computes in SQL what it can (commissions_sql.py) and the rest in Python; "python" computes
    everything with the reference engine (the equivalence test compares the two)."""
    now = now or utcnow()
    stats: dict[str, Any] = defaultdict(int)
    with session_scope() as session:
        todo = _months_with_work(session, partner_ids)
        if engine == "sql":
            todo = compute_in_sql(session, todo, now, stats)
    pids = sorted(todo)
    for i in range(0, len(pids), PARTNER_CHUNK):
        chunk = pids[i:i + PARTNER_CHUNK]
        with session_scope() as session:
            _compute_chunk(session, {p: todo[p] for p in chunk}, now, stats)
    with session_scope() as session:
        _apply_reversals(session, now, stats)
    stats["released"] = release_locked(now)
    return dict(stats)


def _months_with_work(session: Session, partner_ids: list[int] | None) -> dict[int, set[str]]:
    """Which partner-months need work: conversions without a commission, and months with pending ones."""
    todo: dict[int, set[str]] = defaultdict(set)
    period = literal_column(period_sql(session.connection().dialect.name, "conversion.occurred_at"))
    q = (select(Conversion.partner_id, period)
         .outerjoin(Commission, Commission.conversion_id == Conversion.id)
         .where(Commission.id.is_(None), Conversion.partner_id.is_not(None), Conversion.kind.in_(PAYING_KINDS))
         .group_by(Conversion.partner_id, period))
    if partner_ids:
        q = q.where(Conversion.partner_id.in_(partner_ids))
    for pid, month in session.execute(q):
        todo[pid].add(month)
    q2 = (select(Commission.partner_id, Commission.period)
          .where(Commission.status == CommissionStatus.PENDING).distinct())
    if partner_ids:
        q2 = q2.where(Commission.partner_id.in_(partner_ids))
    for pid, month in session.execute(q2):
        if month:
            todo[pid].add(month)
    return todo


def _compute_chunk(session: Session, todo: dict[int, set[str]], now: datetime, stats: dict[str, int]) -> None:
    partners = {p.id: p for p in session.exec(select(Partner).where(Partner.id.in_(list(todo)))).scalars()}
    periods = sorted({p for ps in todo.values() for p in ps})
    start, end = _month_bounds(periods[0])[0], _month_bounds(periods[-1])[1]
    rows = _load_rows(session, list(todo), start, end)
    first = _first_purchases(session, {r.customer_ref for r in rows if r.customer_ref})
    fx = fx_lookup(session)
    by_key: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for r in rows:
        period = period_of(r.occurred_at)
        if period in todo[r.partner_id]:
            by_key[(r.partner_id, period)].append(r)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for (pid, period), period_rows in by_key.items():
        partner = partners[pid]
        try:
            terms = _terms_of(partner.commission_terms, partner.partner_type, partner.tier)
            results = compute_period(terms, period_rows, first_purchase=first, fx=fx)
        except (LookupError, ValueError) as exc:
            stats["skipped"] += len(period_rows)
            stats.setdefault("problems", [])  # type: ignore[arg-type]
            stats["problems"].append(f"partner {pid} {period}: {exc}")  # type: ignore[union-attr]
            continue
        lock = timedelta(days=terms.lock_days)
        row_of = {r.id: r for r in period_rows}
        for res in results:
            r = row_of[res.conversion_id]
            if r.commission_id is None:
                inserts.append({
                    "conversion_id": r.id, "partner_id": pid, "amount_minor": res.amount_minor,
                    "currency": r.currency, "rule": res.rule, "period": period,
                    "status": CommissionStatus.PENDING if res.qualifies else CommissionStatus.CANCELLED,
                    "payable_at": r.occurred_at + lock, "created_at": now,
                })
            elif r.commission_status == CommissionStatus.PENDING and r.commission_minor != res.amount_minor:
                updates.append({"cid": r.commission_id, "amount": res.amount_minor, "rule_": res.rule})
    if inserts:  # Core executemany: the ORM's bulk path costs more than the insert itself
        session.connection().execute(Commission.__table__.insert(), inserts)
    if updates:
        session.execute(
            update(Commission.__table__).where(and_(Commission.__table__.c.id == bindparam("cid"),
                                                    Commission.__table__.c.status == CommissionStatus.PENDING))
            .values(amount_minor=bindparam("amount"), rule=bindparam("rule_")), updates)
    stats["created"] += len(inserts)
    stats["updated"] += len(updates)


@dataclass
class Reversal:
    """A refund, chargeback or reversal not applied yet, with the commission of the conversion it reverses."""

    id: int
    kind: str
    amount_minor: int
    currency: str
    occurred_at: datetime
    original_id: int
    original_kind: str
    original_minor: int
    commission_id: int
    partner_id: int
    commission_minor: int
    commission_currency: str
    commission_status: str
    payout_id: int | None
    payable_at: datetime | None
    period: str


def _apply_reversals(session: Session, now: datetime, stats: dict[str, Any]) -> None:
    fx = fx_lookup(session)
    for reversal in unapplied_reversals(session):
        apply_reversal(session, reversal, now, stats, fx)


def unapplied_reversals(session: Session) -> list[Reversal]:
    """Reversals whose original earned a commission and that have no commission row of their own yet."""
    reversal = Conversion.__table__.alias("rev")
    original = Conversion.__table__.alias("orig")
    applied = Commission.__table__.alias("applied")
    rows = session.execute(
        select(reversal.c.id, reversal.c.kind, reversal.c.amount_minor, reversal.c.currency, reversal.c.occurred_at,
               original.c.id, original.c.kind, original.c.amount_minor, Commission.id, Commission.partner_id,
               Commission.amount_minor, Commission.currency, Commission.status, Commission.payout_id,
               Commission.payable_at, Commission.period)
        .join(original, original.c.id == reversal.c.reverses_id)
        .join(Commission, Commission.conversion_id == original.c.id)
        .outerjoin(applied, applied.c.conversion_id == reversal.c.id)
        .where(reversal.c.kind.in_(REVERSAL_KINDS), applied.c.id.is_(None))
        .order_by(reversal.c.occurred_at, reversal.c.id)
    ).all()
    return [Reversal(*row) for row in rows]


def _refunded_in_sale_currency(r: Reversal, fx: FxLookup) -> Decimal:
    """The reversal's amount in minor units of the sale's currency, converted at the rate of the reversal's day."""
    if r.currency == r.commission_currency:
        return Decimal(r.amount_minor)
    rate = fx(r.currency, r.commission_currency, r.occurred_at)
    return (Decimal(r.amount_minor) * rate).scaleb(exponent(r.commission_currency) - exponent(r.currency))


def apply_reversal(session: Session, r: Reversal, now: datetime, stats: dict[str, Any], fx: FxLookup) -> None:
    """Record what one reversal does to its original's commission: cancel it while no payout holds it, else a
    deduction. Every row is in the commission's currency (the sale's), whatever currency the refund came in."""
    base = {"conversion_id": r.id, "partner_id": r.partner_id, "currency": r.commission_currency,
            "period": r.period, "created_at": now}

    def nothing(rule: str) -> None:
        session.execute(insert(Commission), [{**base, "amount_minor": 0, "status": CommissionStatus.CANCELLED,
                                              "rule": rule, "payable_at": r.payable_at}])

    if r.original_kind in REVERSAL_KINDS:  # the intake refuses these; one stored otherwise gives nothing back
        nothing(f"{r.kind} of a {r.original_kind} changes nothing")
        return
    if r.commission_status == CommissionStatus.CANCELLED or r.commission_minor == 0:
        nothing(f"{r.kind} of a conversion that earned nothing")
        return
    with localcontext() as ctx:
        ctx.prec = 50
        try:
            refunded = _refunded_in_sale_currency(r, fx)
        except LookupError as exc:  # left unapplied: the next run tries again once the rate is entered
            stats["waiting"] += 1
            stats.setdefault("problems", []).append(f"{r.kind} #{r.id}: {exc}")
            return
        full = r.amount_minor == 0 or refunded >= r.original_minor
        share = Decimal(1) if full else refunded / Decimal(r.original_minor)
        wanted = round_minor(Decimal(r.commission_minor) * share)
    payout_id, status = r.payout_id, r.commission_status
    if payout_id is None and status in (CommissionStatus.PENDING, CommissionStatus.PAYABLE) and full:
        cancelled = session.execute(
            update(Commission).where(Commission.id == r.commission_id, Commission.payout_id.is_(None),
                                     Commission.status.in_((CommissionStatus.PENDING, CommissionStatus.PAYABLE)))
            .values(status=CommissionStatus.CANCELLED, rule=Commission.rule + f" (cancelled by {r.kind} #{r.id})"))
        if cancelled.rowcount == 1:
            nothing(f"{r.kind}: cancels commission #{r.commission_id}")
            stats["cancelled"] += 1
            return
        # A batch attached the commission since it was read (or another reversal cancelled it): read it again
        # and fall through to a deduction, so the refund is never lost.
        payout_id, status = session.execute(select(Commission.payout_id, Commission.status)
                                            .where(Commission.id == r.commission_id)).one()
        if status == CommissionStatus.CANCELLED and payout_id is None:
            nothing(f"{r.kind}: commission #{r.commission_id} was cancelled already")
            return
    # Never deduct more than is left of the commission after earlier reversals of the same sale.
    deducted = session.execute(
        select(func.coalesce(func.sum(Commission.amount_minor), 0))
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Conversion.reverses_id == r.original_id, Conversion.kind.in_(REVERSAL_KINDS))).scalar_one()
    left = r.commission_minor + int(deducted)
    if left <= 0:
        nothing(f"{r.kind}: commission #{r.commission_id} was deducted in full already")
        return
    in_payout = payout_id is not None
    session.execute(insert(Commission), [{
        **base, "amount_minor": -min(wanted, left), "rule": f"{r.kind}: deducts from commission #{r.commission_id}",
        "status": CommissionStatus.PAYABLE if in_payout else status,
        "payable_at": now if in_payout else r.payable_at}])
    stats["deducted"] += 1


# --- dry run of a rule change ---------------------------------------------------------------

def load_rule_set(rules_path_or_json: str | dict) -> tuple[CommissionTerms | None, dict[int, CommissionTerms]]:
    """A proposed rule set: a terms object for everyone, or {"default": terms, "partners": {id: terms}}."""
    data: Any = rules_path_or_json
    if isinstance(data, str):
        text = open(data).read() if os.path.exists(data) else data
        data = yaml.safe_load(text) if not text.lstrip().startswith("{") else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a rule set is a JSON/YAML object")
    if "default" in data or "partners" in data:
        default = CommissionTerms.parse(data.get("default"))
        partners = {int(k): CommissionTerms.model_validate(v) for k, v in (data.get("partners") or {}).items()}
        return default, partners
    return CommissionTerms.model_validate(data), {}


def dry_run(rules_path_or_json: str | dict, period_start: datetime, period_end: datetime) -> list[dict[str, Any]]:
    """Per partner: commissions as computed vs under the proposed rules, for conversions in [start, end). Read-only."""
    default, per_partner = load_rule_set(rules_path_or_json)
    out: list[dict[str, Any]] = []
    with Session(get_engine()) as session:
        pids = sorted(set(session.execute(select(Conversion.partner_id).where(
            Conversion.partner_id.is_not(None), Conversion.kind.in_(PAYING_KINDS),
            Conversion.occurred_at >= period_start, Conversion.occurred_at < period_end)).scalars()))
        reversed_ids = set(session.execute(select(Conversion.reverses_id).where(
            Conversion.reverses_id.is_not(None), Conversion.kind.in_(REVERSAL_KINDS))).scalars())
        fx = fx_lookup(session)
        for i in range(0, len(pids), PARTNER_CHUNK):
            chunk = pids[i:i + PARTNER_CHUNK]
            partners = {p.id: p for p in session.execute(select(Partner).where(Partner.id.in_(chunk))).scalars()}
            rows = _load_rows(session, chunk, period_start, period_end)
            first = _first_purchases(session, {r.customer_ref for r in rows if r.customer_ref})
            by_key: dict[tuple[int, str], list[Row]] = defaultdict(list)
            for r in rows:
                by_key[(r.partner_id, period_of(r.occurred_at))].append(r)
            current: dict[tuple[int, str], int] = defaultdict(int)
            proposed: dict[tuple[int, str], int] = defaultdict(int)
            for (pid, _period), period_rows in by_key.items():
                p = partners[pid]
                terms = per_partner.get(pid) or default or _terms_of(p.commission_terms, p.partner_type, p.tier)
                fresh = [Row(**{**r.__dict__, "commission_id": None, "commission_minor": None,
                                "commission_status": CommissionStatus.CANCELLED if r.id in reversed_ids else None})
                         for r in period_rows]
                for r in period_rows:
                    if r.commission_status not in (None, CommissionStatus.CANCELLED):
                        current[(pid, r.currency)] += r.commission_minor or 0
                try:
                    results = compute_period(terms, [r for r in fresh if r.commission_status is None],
                                             first_purchase=first, fx=fx)
                except LookupError as exc:
                    out.append({"partner_id": pid, "partner": p.legal_name, "currency": "", "current_minor": 0,
                                "proposed_minor": 0, "difference_minor": 0, "note": str(exc)})
                    continue
                cur_of = {r.id: r.currency for r in period_rows}
                for res in results:
                    proposed[(pid, cur_of[res.conversion_id])] += res.amount_minor
            for key in sorted(set(current) | set(proposed)):
                pid, cur = key
                out.append({"partner_id": pid, "partner": partners[pid].legal_name, "currency": cur,
                            "current_minor": current[key], "proposed_minor": proposed[key],
                            "difference_minor": proposed[key] - current[key], "note": ""})
        session.rollback()  # nothing to keep: this is a read-only look
    return out
