"""Reconciliation: asking the rails about payouts still processing, and applying SEPA bank reports.

Everything moves payouts only through the idempotent `mark_payout_paid` / `mark_payout_failed`
(tasks/payouts/outcomes.py), so running it twice, or after a webhook already confirmed a payout,
changes nothing. An answer we cannot get is "unknown", never read as failed: that could pay twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from sqlmodel import select

from partnerflow.models import Payout, session_scope
from partnerflow.models.payouts import PayoutStatus
from partnerflow.providers.errors import PermanentError, RetryableError
from partnerflow.providers.payout import PayoutRail
from partnerflow.providers.payout.bank_reports import BankOutcome, read_bank_report
from partnerflow.providers.payout.base import RailResult, RailState
from partnerflow.providers.payout.sepa import end_to_end_id
from partnerflow.tasks.payouts.execution import instruction_for
from partnerflow.tasks.payouts.outcomes import (
    finish_batch,
    mark_payout_failed,
    mark_payout_needs_review,
    mark_payout_paid,
)
from partnerflow.tasks.payouts.rails import payout_rail
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.money import format_money

log = logging.getLogger(__name__)


def reconcile_batch(batch_id: int, *, rail: PayoutRail | None = None) -> dict[str, int]:
    """Ask each rail about the batch's payouts still processing on it (webhooks normally confirm them first).
    `rail` asks only about the payouts recorded for a rail of its name."""
    counts: dict[str, int] = defaultdict(int)
    with session_scope() as session:
        # The rails the payouts were recorded for, even if the settings changed since.
        names = sorted(session.exec(select(Payout.rail).where(
            Payout.batch_id == batch_id, Payout.status == PayoutStatus.PROCESSING).distinct()).all())
    if rail is not None:
        names = [rail.name] if rail.name in names else []
    failures: list[Exception] = []
    for name in names:
        try:
            part = rail or payout_rail(name)
        except Exception as exc:  # a rail we cannot build leaves its payouts processing; the others are asked
            failures.append(exc)
            continue
        try:
            _reconcile_part(batch_id, part, name, counts)
        except Exception as exc:
            failures.append(exc)
        finally:
            if rail is None:
                part.close()
    finish_batch(batch_id)
    if failures:
        raise failures[0]
    return dict(counts)


def _reconcile_part(batch_id: int, rail: PayoutRail, rail_name: str, counts: dict[str, int]) -> None:
    with session_scope() as session:
        payouts = session.exec(select(Payout).where(
            Payout.batch_id == batch_id, Payout.status == PayoutStatus.PROCESSING, Payout.rail == rail_name)).all()
        rows = [(p.id, p.idempotency_key, p.provider_ref, instruction_for(session, p)) for p in payouts]
    permits = limits.Permits(limits.PAYOUT, rail.name, len(rows))
    for payout_id, key, ref, instruction in rows:
        try:
            permits.take()
            result = rail.lookup(key, ref)
        except RetryableError:
            counts["unknown"] += 1
            continue
        problem = rail.mismatch(instruction, result) if result is not None else None
        if problem:  # moved, but not as asked: a person decides; the commissions stay attached
            counts["needs_review"] += int(mark_payout_needs_review(
                payout_id, problem, {"provider_ref": result.provider_ref, **result.held}, actor=rail.name))
        elif result is not None and result.status == RailState.PAID:
            counts["paid"] += int(mark_payout_paid(payout_id, result.provider_ref, actor=rail.name))
        else:
            counts["processing"] += 1


def poll_paypal(*, rail: PayoutRail | None = None, limit: int = 1000) -> dict[str, int]:
    """Ask PayPal about every PayPal payout still processing; mark the settled ones paid or failed."""
    with session_scope() as session:
        payouts = session.exec(select(Payout).where(
            Payout.rail == "paypal", Payout.status == PayoutStatus.PROCESSING, Payout.provider_ref.is_not(None))
            .order_by(Payout.id).limit(limit)).all()
        rows = [(p.id, p.idempotency_key, p.provider_ref, p.batch_id, instruction_for(session, p)) for p in payouts]
    if not rows:
        return {}
    rail = rail or payout_rail("paypal")
    counts: dict[str, int] = defaultdict(int)
    batches = set()
    permits = limits.Permits(limits.PAYOUT, rail.name, len(rows))
    for payout_id, key, ref, batch_id, instruction in rows:
        try:
            permits.take()
            status = rail.status(key, ref)
        except (RetryableError, PermanentError) as exc:
            log.warning("PayPal status for payout %s unknown for now: %s", payout_id, exc.reason)
            counts["unknown"] += 1
            continue
        amount, receiver = getattr(status, "amount", None), getattr(status, "receiver", "")
        held = RailResult(status.state, ref, held={**({"amount": " ".join(amount)} if amount else {}),
                                                   **({"receiver": receiver} if receiver else {})})
        problem = rail.mismatch(instruction, held)
        if problem:  # PayPal pays another amount or person than we asked: never paid nor failed by a poll
            mark_payout_needs_review(payout_id, problem, {"payout_batch_id": ref, **held.held}, actor="paypal")
            counts["needs_review"] += 1
            batches.add(batch_id)
            continue
        if status.state == RailState.PAID:
            mark_payout_paid(payout_id, ref, actor="paypal")
        elif status.state == RailState.FAILED:
            mark_payout_failed(payout_id, f"PayPal: {status.reason}", actor="paypal")
        counts[status.state] += 1
        batches.add(batch_id)
    for batch_id in batches:
        finish_batch(batch_id)
    return dict(counts)


def import_bank_report(path: str | Path) -> dict[str, int]:
    """Apply a SEPA bank report (pain.002 status report or camt.053/054 statement) to our SEPA payouts.

    Lines for payments that are not ours are counted as "unknown", never guessed at. A line that says
    paid with another amount or currency than the payout's (or a statement line without an amount) is
    not read as paid: the payout needs review.
    """
    outcomes = read_bank_report(Path(path).read_bytes())
    with session_scope() as session:
        rows = session.exec(select(Payout.id, Payout.idempotency_key, Payout.batch_id, Payout.amount_minor,
                                   Payout.currency).where(
            Payout.rail == "sepa", Payout.status.in_((PayoutStatus.SENDING, PayoutStatus.PROCESSING,
                                                      PayoutStatus.PAID, PayoutStatus.FAILED)))).all()
    ours = {end_to_end_id(key): (payout_id, batch_id, amount, currency)
            for payout_id, key, batch_id, amount, currency in rows}
    counts: dict[str, int] = defaultdict(int)
    batches = set()
    for outcome in outcomes:
        match = ours.get(outcome.end_to_end_id)
        if match is None:
            counts["unknown"] += 1
            continue
        payout_id, batch_id, amount, currency = match
        problem = _amount_problem(outcome, amount, currency) if outcome.status == RailState.PAID else ""
        if problem:
            changed = mark_payout_needs_review(payout_id, problem, {
                "end_to_end_id": outcome.end_to_end_id, "bank_ref": outcome.bank_ref,
                "bank_amount_minor": outcome.amount_minor, "bank_currency": outcome.currency,
                "payout_amount_minor": amount, "payout_currency": currency}, actor="bank")
            counts["needs_review" if changed else "unchanged"] += 1
        elif outcome.status == RailState.PAID:
            changed = mark_payout_paid(payout_id, outcome.bank_ref or outcome.end_to_end_id, actor="bank")
            counts[outcome.status if changed else "unchanged"] += 1
        else:
            changed = mark_payout_failed(payout_id, outcome.reason, actor="bank")
            counts[outcome.status if changed else "unchanged"] += 1
        batches.add(batch_id)
    for batch_id in batches:
        finish_batch(batch_id)
    return dict(counts)


def _amount_problem(outcome: BankOutcome, amount_minor: int, currency: str) -> str:
    """Why a "paid" line does not prove our payout was paid as asked; "" when it does."""
    if outcome.amount_minor is None:
        return "the bank statement line names this payment but no amount we can read" \
            if outcome.amount_required else ""
    if outcome.amount_minor != amount_minor or (outcome.currency or "").upper() != currency.upper():
        return (f"the bank booked {format_money(outcome.amount_minor, outcome.currency or currency)} for this "
                f"payment, not {format_money(amount_minor, currency)}")
    return ""
