"""Paying an approved batch through the rail, exactly once.

1. `build_batch` recorded each payout with its deterministic key before anything moves.
2. Execution claims a chunk of pending payouts with a compare-and-set UPDATE (status
   pending -> sending, a claim token): two workers never claim the same payout.
3. Only then the rail is called with the payout's key. The provider refuses a second transfer
   under the same key (Stripe Idempotency-Key, PayPal sender_batch_id, the ledger's unique column).
4. A payout left in `sending` by a crash is recovered (after a lease, or at once after an
   ambiguous error) by asking the rail `lookup(key)` first; only a key the provider never saw is
   paid again.
A failed payout gives its commissions back to the partner's balance.

The crash tests kill the process at `payouts.before_call`, `payouts.after_accept` and
`payouts.after_record` (tasks/shared/faults.py).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, select

from partnerflow.models import Partner, Payout, PayoutBatch, session_scope, utcnow
from partnerflow.models.payouts import PAYABLE_BATCH, PayoutStatus
from partnerflow.providers.errors import AmbiguousError, PermanentError, ProviderError, RetryableError
from partnerflow.providers.payout.base import PayoutInstruction, PayoutRail, RailResult
from partnerflow.secrets import decrypt
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts.outcomes import finish_batch, mark_payout_failed, mark_payouts_paid
from partnerflow.tasks.payouts.rails import payout_rail
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.faults import kill_point
from partnerflow.tasks.shared.money import exponent

CLAIM_CHUNK = 200



class Outcome(StrEnum):
    """What the executor does with a payout after the rail answered (or did not)."""

    PAID = "paid"  # recorded paid
    PROCESSING = "processing"  # accepted; confirmed later by a webhook, a poll or a bank report
    RETRY = "retry"  # nothing happened: back to pending for the next pass
    AMBIGUOUS = "ambiguous"  # maybe accepted: stays claimed, looked up before any retry
    FAILED = "failed"  # refused for good: commissions back to the balance


def execute_batch(batch_id: int, *, rail: PayoutRail | None = None,
                  lease_seconds: int | None = None) -> dict[str, int]:
    """Pay every approved payout of the batch through the rail, exactly once. Safe to re-run and to run twice."""
    rail = rail or payout_rail()
    lease = get_settings().payouts.payout_claim_lease_seconds if lease_seconds is None else lease_seconds
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        if batch is None or batch.status not in PAYABLE_BATCH:
            raise ValueError(f"payout batch {batch_id} is not approved (status {getattr(batch, 'status', None)})")
    counts: dict[str, int] = defaultdict(int)
    after_id = 0  # one pass in id order: a payout that must wait (retry, ambiguous) is tried on the next run
    while True:
        ids = _claim(batch_id, lease, after_id)
        if not ids:
            break
        after_id = max(ids)
        for outcome in _pay_chunk(ids, rail):
            counts[outcome.value] += 1
    finish_batch(batch_id)
    return dict(counts)


def _claimable(stale):
    """Pending, or left `sending` by a worker whose lease is over."""
    left_behind = or_(Payout.claimed_at.is_(None), Payout.claimed_at <= stale)
    return or_(Payout.status == PayoutStatus.PENDING, and_(Payout.status == PayoutStatus.SENDING, left_behind))


def _claim(batch_id: int, lease_seconds: int, after_id: int = 0) -> list[int]:
    """Claim up to CLAIM_CHUNK payouts of the batch: pending ones, or ones left `sending` past the lease."""
    token = uuid.uuid4().hex
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    with session_scope() as session:
        candidates = session.exec(
            select(Payout.id).where(Payout.batch_id == batch_id, _claimable(stale), Payout.id > after_id)
            .order_by(Payout.id).limit(CLAIM_CHUNK)).all()
        if not candidates:
            return []
        # Compare-and-set: the row must still be claimable when we write; the token says which rows we won.
        session.execute(
            update(Payout).where(Payout.id.in_(candidates), _claimable(stale))
            .values(status=PayoutStatus.SENDING, claim_token=token, claimed_at=now, attempts=Payout.attempts + 1),
            execution_options={"synchronize_session": False})
    with session_scope() as session:
        return list(session.exec(select(Payout.id).where(Payout.claim_token == token).order_by(Payout.id)).all())


def _instruction(session: Session, payout: Payout) -> PayoutInstruction:
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
    company = get_settings().company_name
    return PayoutInstruction(payout_id=payout.id, idempotency_key=payout.idempotency_key, partner_id=partner.id,
                             partner_name=partner.legal_name, partner_email=partner.email,
                             amount_minor=payout.amount_minor, currency=payout.currency, destination=destination,
                             description=f"{company} commissions, payout {payout.id}",
                             currency_exponent=exponent(payout.currency), payer_name=company)


def _pay_chunk(ids: list[int], rail: PayoutRail) -> list[Outcome]:
    """Call the rail for each claimed payout, then record the answers.

    A crash between a call and the record leaves the payout `sending` with its key: the next run
    asks the provider (lookup) before paying, so recording per chunk is as safe as per payout.
    """
    with session_scope() as session:
        payouts = session.exec(select(Payout).where(Payout.id.in_(ids)).order_by(Payout.id)).all()
        # (payout id, recovering from an earlier claim?, what we recorded from the provider, the instruction)
        work = [(p.id, p.attempts > 1, p.provider_ref, _instruction(session, p)) for p in payouts]
    paid: list[tuple[int, str]] = []
    outcomes: list[Outcome] = []
    permits = limits.Permits(limits.PAYOUT, rail.name, len(work))  # the rail's rate, shared by every worker
    try:
        fresh = [(pid, i) for pid, recovering, _ref, i in work if not recovering]
        answered = _call_batch(rail, fresh) if rail.pays_in_batches else {}
        for payout_id, recovering, ref, instruction in work:
            outcome, detail = answered.get(payout_id) or _call(rail, instruction, recovering, ref, permits)
            outcomes.append(outcome)
            if outcome == Outcome.PAID:
                paid.append((payout_id, detail))
            elif outcome == Outcome.PROCESSING:
                _set(payout_id, status=PayoutStatus.PROCESSING, provider_ref=detail, error=None)
            elif outcome == Outcome.RETRY:
                _set(payout_id, status=PayoutStatus.PENDING, error=detail, claimed_at=None)
            elif outcome == Outcome.AMBIGUOUS:  # maybe accepted: stays claimed, recovered through lookup() next run
                _set(payout_id, error=detail, claimed_at=None)
            elif outcome == Outcome.FAILED:
                mark_payout_failed(payout_id, detail, actor=rail.name)
    finally:
        if paid:
            mark_payouts_paid(paid, actor=rail.name)
            kill_point("payouts.after_record")
    return outcomes


def _answer(result: RailResult | ProviderError) -> tuple[Outcome, str]:
    """(outcome, provider ref or reason) for one answer of the rail."""
    if isinstance(result, AmbiguousError):
        return Outcome.AMBIGUOUS, result.reason
    if isinstance(result, RetryableError):
        return Outcome.RETRY, result.reason
    if isinstance(result, PermanentError):
        return Outcome.FAILED, result.reason
    return Outcome(result.status), result.provider_ref


def _call_batch(rail: PayoutRail, items: list[tuple[int, PayoutInstruction]]) -> dict[int, tuple[Outcome, str]]:
    """Rails that pay a whole batch at once (SEPA: one bank file) get every fresh payout in one call."""
    if not items:
        return {}
    kill_point("payouts.before_call")
    results = rail.pay_batch([instruction for _, instruction in items])
    kill_point("payouts.after_accept")
    return {payout_id: _answer(result) for (payout_id, _), result in zip(items, results, strict=True)}


def _call(rail: PayoutRail, instruction: PayoutInstruction, recovering: bool, provider_ref: str | None,
          permits: limits.Permits) -> tuple[Outcome, str]:
    kill_point("payouts.before_call")
    try:
        permits.take(2 if recovering else 1)  # a recovery may look up, then pay; no permit in time: RETRY
        # Recovering: we may have paid before a crash, so the provider is asked first.
        result = rail.lookup(instruction.idempotency_key, provider_ref) if recovering else None
        if result is None:
            result = rail.pay(instruction)
        kill_point("payouts.after_accept")
    except (AmbiguousError, RetryableError, PermanentError) as exc:
        return _answer(exc)
    return _answer(result)


def _set(payout_id: int, **values) -> None:
    """Record an answer on a payout this worker still holds (status `sending`)."""
    with session_scope() as session:
        session.execute(update(Payout).where(Payout.id == payout_id, Payout.status == PayoutStatus.SENDING)
                        .values(**values))
