"""Payout batches: build, decide, execute through the rail exactly once, reconcile, remit.

Exactly once, step by step (see `execute_batch`):
1. `build_batch` writes a Payout row per partner with the deterministic key `payout:{batch}:{partner}`
   and attaches the partner's payable commissions to it, in one transaction.
2. Execution claims a chunk of pending payouts with a compare-and-set UPDATE (status
   pending -> sending, a claim token) — two workers never claim the same payout.
3. Only then the rail is called with the payout's key. The provider refuses a second transfer
   under the same key (Stripe Idempotency-Key, PayPal sender_batch_id, the ledger's unique column).
4. A payout left in `sending` by a crash is recovered (after a lease, or at once after an
   ambiguous error) by asking the rail `lookup(key)` first; only a key the provider never saw is
   paid again.
A failed payout gives its commissions back to the partner's balance (they are detached).

Set PARTNERFLOW_FAULT_KILL_AT=before_call|after_accept|after_record[:N] to SIGKILL this process at
that point (the Nth time it is reached): the fault-injection test uses it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from partnerflow.models import (
    Commission,
    Contract,
    ContractStatus,
    Conversion,
    Partner,
    Payout,
    PayoutBatch,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.payouts import FxRate
from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.payout import get_payout_rail
from partnerflow.providers.payout.base import PayoutInstruction, PayoutRail, RailResult
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.money import exponent, format_money, round_minor
from partnerflow.tasks.shared.terms import CommissionTerms, default_for

log = logging.getLogger(__name__)

CLAIM_CHUNK = 200
_fault_counts: dict[str, int] = defaultdict(int)


def _fault(point: str) -> None:
    """SIGKILL this process at `point` when PARTNERFLOW_FAULT_KILL_AT names it (tests only)."""
    spec = os.environ.get("PARTNERFLOW_FAULT_KILL_AT", "")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _fault_counts[point] += 1
    if _fault_counts[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# --- balances and FX ------------------------------------------------------------------------

def release_locked(now: datetime | None = None) -> int:
    """Commissions whose lock period is over become payable. Returns how many."""
    now = now or utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Commission).where(Commission.status == "pending", Commission.payable_at <= now)
            .values(status="payable")
        )
        return result.rowcount or 0


def fx_rate(session, base: str, quote: str, on: datetime) -> Decimal:
    """The latest rate on or before `on` (1 base = rate quote); an inverse rate is used when only that exists."""
    if base == quote:
        return Decimal(1)
    day = on.date()
    row = session.exec(select(FxRate).where(FxRate.base == base, FxRate.quote == quote, FxRate.day <= day)
                       .order_by(FxRate.day.desc())).first()
    if row:
        return Decimal(row.rate)
    inverse = session.exec(select(FxRate).where(FxRate.base == quote, FxRate.quote == base, FxRate.day <= day)
                           .order_by(FxRate.day.desc())).first()
    if inverse:
        with localcontext() as ctx:
            ctx.prec = 34
            return Decimal(1) / Decimal(inverse.rate)
    raise LookupError(f"no exchange rate {base}/{quote} on or before {day}; add one to the fx_rate table")


def convert(amount_minor: int, base: str, quote: str, rate: Decimal) -> int:
    """Minor units of `base` to minor units of `quote`, rounded half-even once, at the end."""
    if base == quote:
        return amount_minor
    with localcontext() as ctx:
        ctx.prec = 50
        value = Decimal(amount_minor) * rate
        value = value.scaleb(exponent(quote) - exponent(base))
    return round_minor(value)


def _terms(partner: Partner) -> CommissionTerms:
    try:
        return CommissionTerms.parse(partner.commission_terms) or default_for(partner.partner_type, partner.tier)
    except Exception:
        return default_for(partner.partner_type, partner.tier)


# --- blockers -------------------------------------------------------------------------------

def blockers_for(session, partners: list[Partner], rail_name: str) -> dict[int, list[str]]:
    """Reasons a partner's payout is held: unsigned contract, tax form, payout details, compliance."""
    ids = [p.id for p in partners]
    reasons: dict[int, list[str]] = {pid: [] for pid in ids}
    signed: set[int] = set()
    for chunk in _chunks(ids, 900):
        signed.update(session.exec(select(Contract.partner_id).where(
            Contract.partner_id.in_(chunk), Contract.status == ContractStatus.SIGNED)).all())
    for p in partners:
        if p.id not in signed:
            reasons[p.id].append("unsigned contract")
        if p.tax_form_status != "received":
            reasons[p.id].append("missing tax form")
        if rail_name != "ledger" and not p.payout_details_encrypted:
            reasons[p.id].append("missing payout details")
    try:  # the compliance area's checks (sanctions hit, open finding), when installed
        from partnerflow.tasks.compliance.blockers import payout_blockers
    except ImportError:
        payout_blockers = None
    if payout_blockers is not None:
        for pid, extra in (payout_blockers(session, ids) or {}).items():
            if pid in reasons:
                reasons[pid].extend(extra)
    return reasons


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# --- building a batch -----------------------------------------------------------------------

def _payable_filter(period_end: datetime):
    return and_(Commission.status == "payable", Commission.payout_id.is_(None), Commission.payable_at <= period_end)


def build_batch(period_end: datetime, *, key: str | None = None, rail_name: str | None = None) -> int:
    """Create the batch for `period_end` (or return the one already built under `key`). Returns its id."""
    rail_name = rail_name or get_settings().payouts.payout_rail
    key = key or f"batch:{period_end.isoformat()}"
    release_locked(min(period_end, utcnow()))
    with session_scope() as session:
        existing = session.exec(select(PayoutBatch).where(PayoutBatch.key == key)).first()
        if existing:
            return existing.id
        batch = PayoutBatch(key=key, period_end=period_end, status="draft", flow_run_id=_flow_run_id())
        session.add(batch)
        try:
            session.flush()
        except IntegrityError:  # another worker is building the same batch
            session.rollback()
            return session.exec(select(PayoutBatch.id).where(PayoutBatch.key == key)).one()

        groups: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
        for pid, cur, total, n in session.execute(
            select(Commission.partner_id, Commission.currency, func.sum(Commission.amount_minor), func.count())
            .where(_payable_filter(period_end)).group_by(Commission.partner_id, Commission.currency)
        ):
            groups[pid][cur] = (int(total), int(n))

        partners: list[Partner] = []
        for chunk in _chunks(list(groups), 900):
            partners.extend(session.exec(select(Partner).where(Partner.id.in_(chunk))).all())
        reasons = blockers_for(session, partners, rail_name)
        rates: dict[tuple[str, str], Decimal] = {}
        summary_rows: list[dict[str, Any]] = []
        eligible: dict[int, tuple[Partner, dict[str, str]]] = {}
        for p in partners:
            try:
                balance, used = _balance(session, groups[p.id], p.payout_currency, period_end, rates)
            except LookupError as exc:
                reasons[p.id].append(str(exc))
                balance, used = 0, {}
            terms = _terms(p)
            threshold = terms.payout_threshold_minor if terms.payout_threshold_minor is not None else p.payout_threshold_minor
            if balance < 0:
                reasons[p.id].append("negative balance")
            row = {"partner_id": p.id, "partner": p.legal_name, "amount_minor": balance,
                   "currency": p.payout_currency, "commissions": sum(n for _, n in groups[p.id].values()),
                   "held": list(reasons[p.id])}
            if not reasons[p.id] and balance < threshold:
                row["held"] = []
                row["below_threshold"] = True
            elif not reasons[p.id]:
                eligible[p.id] = (p, used)
            summary_rows.append(row)

        for pid, (p, used) in eligible.items():
            session.add(Payout(batch_id=batch.id, partner_id=pid, amount_minor=0, currency=p.payout_currency,
                               rail=rail_name, idempotency_key=f"payout:{batch.id}:{pid}", fx_rates=used))
        session.flush()
        # Attach the commissions, then take each payout's amount from what is attached: the two never differ.
        created = session.execute(select(Payout.id, Payout.partner_id).where(Payout.batch_id == batch.id)).all()
        if created:
            c = Commission.__table__.c
            session.execute(
                update(Commission.__table__).where(
                    c.partner_id == bindparam("p_partner"), c.status == "payable", c.payout_id.is_(None),
                    c.payable_at <= bindparam("p_end", type_=Commission.__table__.c.payable_at.type))
                .values(payout_id=bindparam("p_payout")),
                [{"p_partner": pid, "p_payout": payout_id, "p_end": period_end} for payout_id, pid in created])
        attached: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
        for payout_id, cur, total, n in session.execute(
            select(Commission.payout_id, Commission.currency, func.sum(Commission.amount_minor), func.count())
            .join(Payout, Payout.id == Commission.payout_id).where(Payout.batch_id == batch.id)
            .group_by(Commission.payout_id, Commission.currency)
        ):
            attached[payout_id][cur] = (int(total), int(n))
        total_by_currency: dict[str, int] = defaultdict(int)
        amounts = {}
        for payout in session.exec(select(Payout).where(Payout.batch_id == batch.id)).all():
            amount, _ = _balance(session, attached[payout.id], payout.currency, period_end, rates)
            amounts[payout.id] = amount
            total_by_currency[payout.currency] += amount
        if amounts:
            t = Payout.__table__
            session.execute(update(t).where(t.c.id == bindparam("p_id")).values(amount_minor=bindparam("p_amount")),
                            [{"p_id": pid, "p_amount": amount} for pid, amount in amounts.items()])
        batch.summary = {
            "period_end": period_end.isoformat(), "rail": rail_name, "payouts": len(amounts),
            "totals": dict(total_by_currency), "held": [r for r in summary_rows if r["held"]],
            "below_threshold": sum(1 for r in summary_rows if r.get("below_threshold")),
            "rows": summary_rows if len(summary_rows) <= 500 else summary_rows[:500],
        }
        session.add(batch)
        audit(session, actor="system", action="payout_batch.built", subject_type="payout_batch", subject_id=batch.id,
              details={"payouts": len(amounts), "totals": dict(total_by_currency)})
        session.flush()
        return batch.id


def _balance(session, by_currency: dict[str, tuple[int, int]], payout_currency: str, on: datetime,
             cache: dict[tuple[str, str], Decimal]) -> tuple[int, dict[str, str]]:
    """Sum per currency, converted once per currency into the payout currency."""
    total, used = 0, {}
    for cur, (amount, _n) in sorted(by_currency.items()):
        if cur != payout_currency:
            if (cur, payout_currency) not in cache:
                cache[(cur, payout_currency)] = fx_rate(session, cur, payout_currency, on)
            rate = cache[(cur, payout_currency)]
            used[f"{cur}/{payout_currency}"] = str(rate)
            total += convert(amount, cur, payout_currency, rate)
        else:
            total += amount
    return total, used


def total_minor_by_currency(batch_id: int) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(select(Payout.currency, func.sum(Payout.amount_minor))
                               .where(Payout.batch_id == batch_id, Payout.status != "held").group_by(Payout.currency))
        return {cur: int(total) for cur, total in rows}


def decide_batch(batch_id: int, *, approve: bool, actor: str, note: str = "", hold_partner_ids: list[int] = (),
                 status_if_rejected: str = "rejected") -> PayoutBatch:
    """Record the decision (audited). Held partners' payouts are released back to their balance."""
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        if batch.status != "draft":
            return batch
        held = list(hold_partner_ids) if approve else [
            pid for pid in session.exec(select(Payout.partner_id).where(Payout.batch_id == batch_id)).all()]
        if held:
            ids = session.exec(select(Payout.id).where(Payout.batch_id == batch_id, Payout.partner_id.in_(held),
                                                       Payout.status == "pending")).all()
            if ids:
                session.execute(update(Commission).where(Commission.payout_id.in_(ids)).values(payout_id=None),
                                execution_options={"synchronize_session": False})
                session.execute(update(Payout).where(Payout.id.in_(ids)).values(
                    status="held", error=f"held by {actor}" + (f": {note}" if note else "")))
        batch.status = "approved" if approve else status_if_rejected
        batch.approved_by = actor
        batch.decision_note = note or None
        session.add(batch)
        audit(session, actor=actor, action=f"payout_batch.{batch.status}", subject_type="payout_batch",
              subject_id=batch_id, details={"note": note, "held_partner_ids": list(hold_partner_ids)})
        return batch


# --- executing ------------------------------------------------------------------------------

def _flow_run_id() -> str | None:
    from partnerflow.models.audit import current_flow_run_id

    return current_flow_run_id()


def _instruction(session, payout: Payout) -> PayoutInstruction:
    from partnerflow.secrets import decrypt

    partner = session.get(Partner, payout.partner_id)
    destination: dict[str, Any] = {}
    if partner.payout_details_encrypted:
        clear = decrypt(partner.payout_details_encrypted)
        try:
            parsed = json.loads(clear)
            destination = parsed if isinstance(parsed, dict) else {"details": clear}
        except ValueError:
            destination = {"details": clear}
        if partner.payout_method:
            destination.setdefault("method", partner.payout_method)
    return PayoutInstruction(payout_id=payout.id, idempotency_key=payout.idempotency_key, partner_id=partner.id,
                             partner_name=partner.legal_name, partner_email=partner.email,
                             amount_minor=payout.amount_minor, currency=payout.currency, destination=destination,
                             description=f"{get_settings().company_name} commissions, payout {payout.id}")


def _claim(batch_id: int, lease_seconds: int, after_id: int = 0) -> tuple[str, list[int]]:
    """Claim up to CLAIM_CHUNK payouts of the batch: pending ones, or ones left `sending` past the lease."""
    token = uuid.uuid4().hex
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    with session_scope() as session:
        candidates = session.exec(
            select(Payout.id).where(Payout.batch_id == batch_id, or_(
                Payout.status == "pending",
                and_(Payout.status == "sending", or_(Payout.claimed_at.is_(None), Payout.claimed_at <= stale))))
            .where(Payout.id > after_id)
            .order_by(Payout.id).limit(CLAIM_CHUNK)).all()
        if not candidates:
            return token, []
        # Compare-and-set: the row must still be claimable when we write; the token says which rows we won.
        session.execute(
            update(Payout).where(Payout.id.in_(candidates), or_(
                Payout.status == "pending",
                and_(Payout.status == "sending", or_(Payout.claimed_at.is_(None), Payout.claimed_at <= stale))))
            .values(status="sending", claim_token=token, claimed_at=now, attempts=Payout.attempts + 1),
            execution_options={"synchronize_session": False})
    with session_scope() as session:
        won = session.exec(select(Payout.id).where(Payout.claim_token == token).order_by(Payout.id)).all()
    return token, list(won)


def execute_batch(batch_id: int, *, rail: PayoutRail | None = None, lease_seconds: int | None = None) -> dict[str, int]:
    """Pay every approved payout of the batch through the rail, exactly once. Safe to re-run and to run twice."""
    rail = rail or get_payout_rail(get_settings().payouts)
    lease = get_settings().payouts.payout_claim_lease_seconds if lease_seconds is None else lease_seconds
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        if batch is None or batch.status not in ("approved", "paid", "partially_paid"):
            raise ValueError(f"payout batch {batch_id} is not approved (status {getattr(batch, 'status', None)})")
    counts: dict[str, int] = defaultdict(int)
    after_id = 0  # one pass in id order: a payout that must wait (retry, ambiguous) is tried on the next run
    while True:
        _token, ids = _claim(batch_id, lease, after_id)
        if not ids:
            break
        after_id = max(ids)
        for outcome in _pay_chunk(ids, rail):
            counts[outcome] += 1
    finish_batch(batch_id)
    return dict(counts)


def _pay_chunk(ids: list[int], rail: PayoutRail) -> list[str]:
    """Call the rail for each claimed payout, then record the answers in one transaction.

    A crash between a call and the record leaves the payout `sending` with its key: the next run
    asks the provider (lookup) before paying, so recording per chunk is as safe as per payout.
    """
    with session_scope() as session:
        payouts = session.exec(select(Payout).where(Payout.id.in_(ids)).order_by(Payout.id)).all()
        instructions = [(p.id, p.attempts > 1, _instruction(session, p)) for p in payouts]
    paid: list[tuple[int, str]] = []
    outcomes: list[str] = []
    try:
        answered = _call_batch(rail, [(pid, i) for pid, recovering, i in instructions if not recovering])
        for payout_id, recovering, instruction in instructions:
            outcome, detail = answered.get(payout_id) or _call(rail, instruction, recovering)
            outcomes.append(outcome)
            if outcome == "paid":
                paid.append((payout_id, detail))
            elif outcome == "processing":
                _set(payout_id, status="processing", provider_ref=detail, error=None)
            elif outcome == "retry":
                _set(payout_id, status="pending", error=detail, claimed_at=None)
            elif outcome == "ambiguous":  # maybe accepted: stays claimed, recovered through lookup() next run
                _set(payout_id, error=detail, claimed_at=None)
            elif outcome == "unconfirmed":
                _set(payout_id, error=detail)
            elif outcome == "failed":
                mark_payout_failed(payout_id, detail, actor=rail.name)
    finally:
        if paid:
            mark_payouts_paid(paid, actor=rail.name)
            _fault("after_record")
    return outcomes


def _call_batch(rail: PayoutRail, items: list[tuple[int, PayoutInstruction]]) -> dict[int, tuple[str, str]]:
    """Rails that take a whole batch at once (SEPA: one bank file) get every fresh payout in one call."""
    pay_batch = getattr(rail, "pay_batch", None)
    if pay_batch is None or not items:
        return {}
    _fault("before_call")
    results = pay_batch([instruction for _, instruction in items])
    _fault("after_accept")
    answered: dict[int, tuple[str, str]] = {}
    for (payout_id, _), result in zip(items, results, strict=True):
        if isinstance(result, AmbiguousError):
            answered[payout_id] = ("ambiguous", result.reason)
        elif isinstance(result, RetryableError):
            answered[payout_id] = ("retry", result.reason)
        elif isinstance(result, PermanentError):
            answered[payout_id] = ("failed", result.reason)
        else:
            answered[payout_id] = (result.status, result.provider_ref)
    return answered


def _call(rail: PayoutRail, instruction: PayoutInstruction, recovering: bool) -> tuple[str, str]:
    _fault("before_call")
    try:
        result: RailResult | None = None
        if recovering:  # we may have paid before a crash: ask the provider first
            lookup = getattr(rail, "lookup", None)
            result = lookup(instruction.idempotency_key) if lookup else None
            if result is None and not (lookup or rail.idempotent):
                return "unconfirmed", "left unconfirmed by a crash; reconcile with the provider by hand"
        if result is None:
            result = rail.pay(instruction)
        _fault("after_accept")
    except AmbiguousError as exc:
        return "ambiguous", exc.reason
    except RetryableError as exc:
        return "retry", exc.reason
    except PermanentError as exc:
        return "failed", exc.reason
    return result.status, result.provider_ref


def _set(payout_id: int, from_statuses: tuple[str, ...] = ("sending",), **values) -> None:
    with session_scope() as session:
        session.execute(update(Payout).where(Payout.id == payout_id, Payout.status.in_(from_statuses)).values(**values))


def mark_payout_paid(payout_id: int, provider_ref: str, actor: str) -> bool:
    """The provider confirmed the payout. Idempotent: True only the first time."""
    return mark_payouts_paid([(payout_id, provider_ref)], actor=actor) == 1


def mark_payouts_paid(confirmed: list[tuple[int, str]], actor: str) -> int:
    """Record several confirmations in one transaction; returns how many changed (the rest were already final)."""
    changed = 0
    now = utcnow()
    with session_scope() as session:
        for payout_id, provider_ref in confirmed:
            result = session.execute(
                update(Payout).where(Payout.id == payout_id, Payout.status.in_(("pending", "sending", "processing")))
                .values(status="paid", provider_ref=provider_ref, paid_at=now, error=None)
            )
            if result.rowcount != 1:
                continue
            changed += 1
            session.execute(update(Commission).where(Commission.payout_id == payout_id).values(status="paid"),
                            execution_options={"synchronize_session": False})
            audit(session, actor=actor, action="payout.paid", subject_type="payout", subject_id=payout_id,
                  details={"provider_ref": provider_ref})
    return changed


def mark_payout_failed(payout_id: int, reason: str, actor: str) -> bool:
    """The payout failed (or was returned): its commissions go back to the balance, the team is told.

    Idempotent: True only the first time; the team mail is sent exactly once (key payout-failed:{id}).
    """
    with session_scope() as session:
        result = session.execute(
            update(Payout).where(Payout.id == payout_id,
                                 Payout.status.in_(("pending", "sending", "processing", "paid")))
            .values(status="failed", error=reason)
        )
        changed = result.rowcount == 1
        if changed:
            session.execute(update(Commission).where(Commission.payout_id == payout_id)
                            .values(payout_id=None, status="payable"),
                            execution_options={"synchronize_session": False})
            audit(session, actor=actor, action="payout.failed", subject_type="payout", subject_id=payout_id,
                  details={"reason": reason})
        payout = session.get(Payout, payout_id)
        partner = session.get(Partner, payout.partner_id) if payout else None
    if payout is not None and payout.status == "failed":
        from partnerflow.tasks.shared.mail import deliver

        settings = get_settings()
        deliver(f"payout-failed:{payout_id}", kind="payout_failed", to_email=settings.team_email,
                template="payouts/payout_failed", context={
                    "payout_id": payout_id, "partner_name": partner.legal_name, "partner_id": partner.id,
                    "amount": format_money(payout.amount_minor, payout.currency), "reason": payout.error or reason,
                })
    return changed


def finish_batch(batch_id: int) -> str:
    """Set the batch's status from its payouts' statuses."""
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        statuses = {s: n for s, n in session.execute(
            select(Payout.status, func.count()).where(Payout.batch_id == batch_id).group_by(Payout.status))}
        open_ = sum(statuses.get(s, 0) for s in ("pending", "sending", "processing"))
        if batch.status in ("approved", "partially_paid", "paid"):
            if open_:
                batch.status = "approved"
            elif statuses.get("failed"):
                batch.status = "partially_paid"
            else:
                batch.status = "paid"
            session.add(batch)
        return batch.status


def reconcile_batch(batch_id: int, *, rail: PayoutRail | None = None) -> dict[str, int]:
    """Ask the rail about payouts still processing (webhooks normally confirm them first)."""
    rail = rail or get_payout_rail(get_settings().payouts)
    lookup = getattr(rail, "lookup", None)
    counts: dict[str, int] = defaultdict(int)
    if lookup is None:
        return {}
    with session_scope() as session:
        rows = session.exec(select(Payout.id, Payout.idempotency_key).where(
            Payout.batch_id == batch_id, Payout.status == "processing")).all()
    for payout_id, key in rows:
        try:
            result = lookup(key)
        except RetryableError:
            counts["unknown"] += 1
            continue
        if result is not None and result.status == "paid":
            counts["paid"] += int(mark_payout_paid(payout_id, result.provider_ref, actor=rail.name))
        else:
            counts["processing"] += 1
    finish_batch(batch_id)
    return dict(counts)


# --- remittance -----------------------------------------------------------------------------

def remittance_lines(session, payout_id: int) -> list[dict[str, str]]:
    rows = session.execute(
        select(Conversion.occurred_at, Conversion.kind, Conversion.external_id, Conversion.product,
               Commission.amount_minor, Commission.currency, Commission.rule)
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Commission.payout_id == payout_id).order_by(Conversion.occurred_at, Conversion.id))
    return [{"date": at.date().isoformat(), "kind": kind, "reference": ext, "product": product or "",
             "commission": format_money(amount, cur), "rule": rule} for at, kind, ext, product, amount, cur, rule in rows]


def send_remittances(batch_id: int) -> int:
    """One remittance mail per paid payout, with its line items; exactly once per payout."""
    from partnerflow.tasks.shared.mail import deliver

    with session_scope() as session:
        payouts = session.exec(select(Payout).where(Payout.batch_id == batch_id, Payout.status == "paid")).all()
        work = []
        for payout in payouts:
            partner = session.get(Partner, payout.partner_id)
            work.append((payout, partner, remittance_lines(session, payout.id)))
    for payout, partner, lines in work:
        deliver(f"remittance:{payout.id}", kind="remittance", to_email=partner.email, template="payouts/remittance",
                partner_id=partner.id, context={
                    "name": partner.contact_name or partner.legal_name, "payout_id": payout.id,
                    "amount": format_money(payout.amount_minor, payout.currency), "lines": lines,
                    "fx_rates": payout.fx_rates, "provider_ref": payout.provider_ref or "",
                    "paid_on": (payout.paid_at or utcnow()).date().isoformat(),
                })
    return len(work)
