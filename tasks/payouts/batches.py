"""Payout batches: build one per period end, then record the decision on it.

`build_batch` writes a Payout row per eligible partner with the deterministic key
`payout:{installation namespace}:{batch}:{partner}` (tasks/payouts/keys.py) and attaches the
partner's payable commissions to it, in one transaction; the amount is taken from what is attached,
so the two never differ. Paying it is `execution.execute_batch`; a held or rejected payout gives its
commissions back to the balance.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models import (
    Commission,
    Contract,
    ContractStatus,
    Partner,
    Payout,
    PayoutBatch,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.audit import current_flow_run_id
from partnerflow.models.onboarding import TaxFormStatus
from partnerflow.models.payouts import CommissionStatus, PayoutBatchStatus, PayoutStatus
from partnerflow.tasks.compliance.blockers import payout_blockers
from partnerflow.tasks.payouts.balances import Sums, balance, fx_lookup, payout_threshold, release_locked
from partnerflow.tasks.payouts.keys import installation_namespace, payout_key
from partnerflow.tasks.payouts.routing import Routing

SQL_IN_CHUNK = 900  # ids per IN (...) list, below SQLite's parameter limit
SUMMARY_ROWS = 500
INSERT_CHUNK = 5000


def _chunks(items: list, size: int = SQL_IN_CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def blockers_for(session: Session, partners: list[Partner], routing: Routing) -> dict[int, list[str]]:
    """Reasons a partner's payout is held: unsigned contract, tax form, payout details, a method not enabled
    or a currency its rail cannot pay, compliance."""
    ids = [p.id for p in partners]
    reasons: dict[int, list[str]] = {pid: [] for pid in ids}
    signed: set[int] = set()
    for chunk in _chunks(ids):
        signed.update(session.exec(select(Contract.partner_id).where(
            Contract.partner_id.in_(chunk), Contract.status == ContractStatus.SIGNED)).all())
    for p in partners:
        if p.id not in signed:
            reasons[p.id].append("unsigned contract")
        if p.tax_form_status != TaxFormStatus.RECEIVED:
            reasons[p.id].append("missing tax form")
        rail_name, cannot = routing.rail_for(p)
        if cannot:
            reasons[p.id].append(cannot)
        if rail_name != "ledger" and not p.payout_details_encrypted:
            reasons[p.id].append("missing payout details")
    for pid, extra in (payout_blockers(session, ids) or {}).items():  # sanctions hit, open finding
        if pid in reasons:
            reasons[pid].extend(extra)
    return reasons


def _payable(period_end: datetime):
    return and_(Commission.status == CommissionStatus.PAYABLE, Commission.payout_id.is_(None),
                Commission.payable_at <= period_end)


def build_batch(period_end: datetime, *, key: str | None = None, rail_name: str | None = None) -> int:
    """Create the batch for `period_end` (or return the one already built under `key`). Returns its id.

    Each payout records the rail that pays it (the partner's method, see routing.py): one batch may pay
    through several rails. `rail_name` replaces PARTNERFLOW_PAYOUT_RAIL for partners who chose no method."""
    routing = Routing.from_settings(rail_name)
    key = key or f"batch:{period_end.isoformat()}"
    release_locked(min(period_end, utcnow()))
    namespace = installation_namespace()
    with session_scope() as session:
        existing = session.exec(select(PayoutBatch).where(PayoutBatch.key == key)).first()
        if existing:
            return existing.id
        batch = PayoutBatch(key=key, period_end=period_end, status=PayoutBatchStatus.DRAFT,
                            flow_run_id=current_flow_run_id())
        session.add(batch)
        try:
            session.flush()
        except IntegrityError:  # another worker is building the same batch
            session.rollback()
            return session.exec(select(PayoutBatch.id).where(PayoutBatch.key == key)).one()

        groups: dict[int, Sums] = defaultdict(dict)
        for pid, cur, total, n in session.execute(
            select(Commission.partner_id, Commission.currency, func.sum(Commission.amount_minor), func.count())
            .where(_payable(period_end)).group_by(Commission.partner_id, Commission.currency)
        ):
            groups[pid][cur] = (int(total), int(n))
        partners: list[Partner] = []
        for chunk in _chunks(list(groups)):
            partners.extend(session.exec(select(Partner).where(Partner.id.in_(chunk))).all())

        fx = fx_lookup(session)
        summary_rows, eligible = _eligible(session, partners, groups, period_end, routing, fx)
        rails: dict[str, int] = defaultdict(int)
        now = utcnow()
        rows = []
        for pid, (p, used, amount) in eligible.items():
            rail = routing.rail_for(p)[0]
            rails[rail] += 1
            rows.append({"batch_id": batch.id, "partner_id": pid, "amount_minor": amount, "currency": p.payout_currency,
                         "rail": rail, "idempotency_key": payout_key(namespace, batch.id, pid), "fx_rates": used,
                         "status": PayoutStatus.PENDING, "attempts": 0, "created_at": now})
        for chunk in _chunks(rows, INSERT_CHUNK):  # Core bulk insert: every key recorded before anything moves
            session.connection().execute(Payout.__table__.insert(), chunk)
        totals = _attach_commissions(session, batch.id, period_end, fx)
        batch.summary = {
            "period_end": period_end.isoformat(), "rail": routing.default_rail, "rails": dict(rails),
            "payouts": len(eligible),
            "totals": totals, "held": [r for r in summary_rows if r["held"]],
            "below_threshold": sum(1 for r in summary_rows if r.get("below_threshold")),
            "rows": summary_rows[:SUMMARY_ROWS],
        }
        session.add(batch)
        audit(session, actor="system", action="payout_batch.built", subject_type="payout_batch", subject_id=batch.id,
              details={"payouts": len(eligible), "totals": totals})
        session.flush()
        return batch.id


def _eligible(session: Session, partners: list[Partner], groups: dict[int, Sums], period_end: datetime,
              routing: Routing, fx) -> tuple[list[dict[str, Any]], dict[int, tuple[Partner, dict[str, str], int]]]:
    """(a summary row per partner, the partners to pay with the rates used for them and their balance)."""
    reasons = blockers_for(session, partners, routing)
    summary_rows: list[dict[str, Any]] = []
    eligible: dict[int, tuple[Partner, dict[str, str], int]] = {}
    thresholds: dict[tuple, int] = {}
    for p in partners:
        try:
            amount, used = balance(groups[p.id], p.payout_currency, period_end, fx)
        except LookupError as exc:
            reasons[p.id].append(str(exc))
            amount, used = 0, {}
        if amount < 0:
            reasons[p.id].append("negative balance")
        row = {"partner_id": p.id, "partner": p.legal_name, "amount_minor": amount,
               "currency": p.payout_currency, "commissions": sum(n for _, n in groups[p.id].values()),
               "held": list(reasons[p.id])}
        # Partners on the same terms share a threshold: parse each set of terms once.
        same = (json.dumps(p.commission_terms, sort_keys=True, default=str), p.partner_type, p.tier,
                p.payout_threshold_minor)
        if not reasons[p.id] and same not in thresholds:
            thresholds[same] = payout_threshold(p)
        if not reasons[p.id] and amount < thresholds[same]:
            row["below_threshold"] = True
        elif not reasons[p.id]:
            eligible[p.id] = (p, used, amount)
        summary_rows.append(row)
    return summary_rows, eligible


def _attach_commissions(session: Session, batch_id: int, period_end: datetime, fx) -> dict[str, int]:
    """Attach each partner's payable commissions to their payout (one UPDATE for the batch), then set the
    payout's amount from what is attached (a commission made payable since the balance was read counts).
    Returns the batch total per currency."""
    c, p = Commission.__table__.c, Payout.__table__.c
    in_batch = select(p.partner_id).where(p.batch_id == batch_id)
    session.execute(
        update(Commission.__table__).where(
            c.partner_id.in_(in_batch), c.status == CommissionStatus.PAYABLE, c.payout_id.is_(None),
            c.payable_at <= period_end)
        .values(payout_id=select(p.id).where(p.batch_id == batch_id, p.partner_id == c.partner_id)
                .scalar_subquery()))
    attached: dict[int, Sums] = defaultdict(dict)
    for payout_id, cur, total, n in session.execute(
        select(Commission.payout_id, Commission.currency, func.sum(Commission.amount_minor), func.count())
        .join(Payout, Payout.id == Commission.payout_id).where(Payout.batch_id == batch_id)
        .group_by(Commission.payout_id, Commission.currency)
    ):
        attached[payout_id][cur] = (int(total), int(n))
    totals: dict[str, int] = defaultdict(int)
    changed = []
    for payout_id, currency, estimate in session.execute(
            select(p.id, p.currency, p.amount_minor).where(p.batch_id == batch_id)).all():
        amount, _ = balance(attached[payout_id], currency, period_end, fx)
        totals[currency] += amount
        if amount != estimate:
            changed.append({"p_id": payout_id, "p_amount": amount})
    if changed:
        session.execute(update(Payout.__table__).where(p.id == bindparam("p_id"))
                        .values(amount_minor=bindparam("p_amount")), changed)
    return dict(totals)


def total_minor_by_currency(batch_id: int) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(select(Payout.currency, func.sum(Payout.amount_minor))
                               .where(Payout.batch_id == batch_id, Payout.status != PayoutStatus.HELD)
                               .group_by(Payout.currency))
        return {cur: int(total) for cur, total in rows}


def decide_batch(batch_id: int, *, approve: bool, actor: str, note: str = "", hold_partner_ids: list[int] = (),
                 status_if_rejected: str = PayoutBatchStatus.REJECTED) -> PayoutBatch:
    """Record the decision (audited). Held partners' payouts are released back to their balance."""
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        if batch.status != PayoutBatchStatus.DRAFT:
            return batch
        held = list(hold_partner_ids) if approve else list(
            session.exec(select(Payout.partner_id).where(Payout.batch_id == batch_id)).all())
        if held:
            ids = session.exec(select(Payout.id).where(Payout.batch_id == batch_id, Payout.partner_id.in_(held),
                                                       Payout.status == PayoutStatus.PENDING)).all()
            if ids:
                session.execute(update(Commission).where(Commission.payout_id.in_(ids)).values(payout_id=None),
                                execution_options={"synchronize_session": False})
                session.execute(update(Payout).where(Payout.id.in_(ids)).values(
                    status=PayoutStatus.HELD, error=f"held by {actor}" + (f": {note}" if note else "")))
        batch.status = PayoutBatchStatus.APPROVED if approve else status_if_rejected
        batch.approved_by = actor
        batch.decision_note = note or None
        session.add(batch)
        audit(session, actor=actor, action=f"payout_batch.{batch.status}", subject_type="payout_batch",
              subject_id=batch_id, details={"note": note, "held_partner_ids": list(hold_partner_ids)})
        return batch


def hold_newly_blocked(batch_id: int) -> dict[int, list[str]]:
    """Before paying: hold the payouts (never sent yet) of partners blocked since the batch was approved —
    payout details changed and still in their hold, a new blocking finding, a suspension. Their commissions
    go back to the balance for a later batch; returns {partner_id: reasons}."""
    with session_scope() as session:
        fresh = dict(session.exec(select(Payout.partner_id, Payout.id).where(
            Payout.batch_id == batch_id, Payout.status == PayoutStatus.PENDING, Payout.first_sent_at.is_(None))).all())
        blocked = payout_blockers(session, list(fresh)) if fresh else {}
        for pid, reasons in blocked.items():
            session.execute(update(Commission).where(Commission.payout_id == fresh[pid]).values(payout_id=None),
                            execution_options={"synchronize_session": False})
            session.execute(update(Payout).where(Payout.id == fresh[pid], Payout.status == PayoutStatus.PENDING)
                            .values(status=PayoutStatus.HELD, error="held before paying: " + "; ".join(reasons)))
            audit(session, actor="system", action="payout.held_before_paying", subject_type="payout",
                  subject_id=fresh[pid], details={"partner_id": pid, "reasons": reasons})
        return blocked


def batch_with_payouts(batch_id: int) -> tuple[PayoutBatch, list[Payout]]:
    """The batch and its payouts (by partner), detached for reading."""
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        payouts = list(session.exec(select(Payout).where(Payout.batch_id == batch_id)
                                    .order_by(Payout.partner_id)).all())
        return batch, payouts


def batch_status(batch_id: int) -> str:
    with session_scope() as session:
        return session.get(PayoutBatch, batch_id).status


def paid_count(batch_id: int) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Payout).where(
            Payout.batch_id == batch_id, Payout.status == PayoutStatus.PAID)).scalar_one()
