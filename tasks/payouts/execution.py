"""Paying an approved batch through the rail, exactly once.

1. `build_batch` recorded each payout with its deterministic key before anything moves.
2. Execution claims a chunk of pending payouts with a compare-and-set UPDATE (status
   pending -> sending, a claim token): two workers never claim the same payout.
3. Only then the rail is called with the payout's key. The provider refuses a second transfer
   under the same key (Stripe Idempotency-Key, PayPal sender_batch_id, the ledger's unique column).
4. A payout left in `sending` by a crash is recovered (after a lease, or at once after an
   ambiguous error) by asking the rail `lookup(key)` first; only a key the provider never saw is
   paid again. A payout whose provider dedupes keys only for a while (PayPal) and whose first answer
   was lost is never sent again once that window is over: it needs review.
5. A batch may span rails (each partner's method, tasks/payouts/routing.py): each payout is claimed and
   paid through the rail recorded on it, one rail's part at a time; one rail failing leaves the others paid.
6. Rails that write bank files (SEPA) are checked against our record of which payment went into which
   file (tasks/payouts/bank_files.py), not only the folder, which the team archives.
A failed payout gives its commissions back to the partner's balance; one whose money moved, but not
as we asked (amount, currency, destination), keeps them and waits for a person (needs review).

The crash tests kill the process at `payouts.after_claim` (a chunk claimed, no rail called),
`payouts.before_call`, `payouts.after_accept`, `payouts.before_record` (every payout of the chunk
answered, none recorded) and `payouts.after_record` (tasks/shared/faults.py).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlmodel import Session, select

from partnerflow.models import Partner, Payout, PayoutBatch, session_scope, utcnow
from partnerflow.models.payouts import PAYABLE_BATCH, PayoutStatus
from partnerflow.providers.errors import AmbiguousError, ProviderError, RetryableError
from partnerflow.providers.payout.base import NeedsReview, PayoutInstruction, PayoutRail, RailResult
from partnerflow.secrets import decrypt
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts.bank_files import pay_in_files
from partnerflow.tasks.payouts.batches import hold_newly_blocked
from partnerflow.tasks.payouts.bulk_outcomes import record_paid
from partnerflow.tasks.payouts.outcomes import (
    finish_batch,
    mark_payout_failed,
    mark_payout_needs_review,
)
from partnerflow.tasks.payouts.rails import payout_rail
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.faults import kill_point
from partnerflow.tasks.shared.money import exponent

CLAIM_CHUNK = 500  # payouts claimed, then recorded paid, per transaction

class Outcome(StrEnum):
    """What the executor does with a payout after the rail answered (or did not)."""

    PAID = "paid"  # recorded paid
    PROCESSING = "processing"  # accepted; confirmed later by a webhook, a poll or a bank report
    RETRY = "retry"  # nothing happened: back to pending for the next pass
    AMBIGUOUS = "ambiguous"  # maybe accepted: stays claimed, looked up before any retry
    FAILED = "failed"  # refused for good: commissions back to the balance
    NEEDS_REVIEW = "needs_review"  # moved, but not as asked, or no longer safe to ask: a person decides


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    detail: str  # the provider's ref, or the reason
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Work:
    payout_id: int
    recovering: bool  # claimed before: the rail may have been called, so it is asked first
    provider_ref: str | None
    first_sent_at: datetime | None
    error: str | None  # what the last attempt left (the evidence when it needs review)
    instruction: PayoutInstruction


def execute_batch(batch_id: int, *, rail: PayoutRail | None = None,
                  lease_seconds: int | None = None) -> dict[str, int]:
    """Pay every approved payout of the batch through the rail recorded on it, exactly once. Safe to re-run
    and to run twice. `rail` pays only the payouts recorded for a rail of its name (tests, a fake rail)."""
    lease = get_settings().payouts.payout_claim_lease_seconds if lease_seconds is None else lease_seconds
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        if batch is None or batch.status not in PAYABLE_BATCH:
            raise ValueError(f"payout batch {batch_id} is not approved (status {getattr(batch, 'status', None)})")
        # The rails the payouts were recorded for, even if the settings changed since.
        names = [rail.name] if rail else batch_rails(session, batch_id)
    hold_newly_blocked(batch_id)  # the approval may be days old: new details in their hold are not paid
    counts: dict[str, int] = defaultdict(int)
    failures: list[Exception] = []
    for name in names:
        try:
            _execute_part(batch_id, rail or payout_rail(name), name, lease, counts, close=rail is None)
        except Exception as exc:  # one rail down (or misconfigured) must not keep the other rails' payouts waiting
            failures.append(exc)
    finish_batch(batch_id)
    if failures:
        raise failures[0]
    return dict(counts)


def batch_rails(session: Session, batch_id: int) -> list[str]:
    """The rails the batch's payouts were recorded for, in name order."""
    return sorted(session.exec(select(Payout.rail).where(Payout.batch_id == batch_id).distinct()).all())


def _execute_part(batch_id: int, rail: PayoutRail, rail_name: str, lease: int, counts: dict[str, int], *,
                  close: bool) -> None:
    """One rail's part of the batch: claim its payouts in id order and pay them."""
    after_id = 0  # one pass in id order: a payout that must wait (retry, ambiguous) is tried on the next run
    try:
        while True:
            ids = _claim(batch_id, lease, after_id, rail_name)
            if not ids:
                break
            after_id = max(ids)
            for outcome in _pay_chunk(ids, rail):
                counts[outcome.value] += 1
    finally:
        if close:
            rail.close()


def _claimable(stale):
    """Pending, or left `sending` by a worker whose lease is over."""
    left_behind = or_(Payout.claimed_at.is_(None), Payout.claimed_at <= stale)
    return or_(Payout.status == PayoutStatus.PENDING, and_(Payout.status == PayoutStatus.SENDING, left_behind))


def _claim(batch_id: int, lease_seconds: int, after_id: int = 0, rail_name: str | None = None) -> list[int]:
    """Claim up to CLAIM_CHUNK payouts of the batch (of one rail): pending ones, or ones left `sending` past
    the lease."""
    token = uuid.uuid4().hex
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    with session_scope() as session:
        part = [Payout.rail == rail_name] if rail_name else []
        candidates = session.exec(
            select(Payout.id).where(Payout.batch_id == batch_id, _claimable(stale), Payout.id > after_id, *part)
            .order_by(Payout.id).limit(CLAIM_CHUNK)).all()
        if not candidates:
            return []
        # Compare-and-set: the row must still be claimable when we write; the token says which rows we won.
        session.execute(
            update(Payout).where(Payout.id.in_(candidates), _claimable(stale))
            .values(status=PayoutStatus.SENDING, claim_token=token, claimed_at=now, attempts=Payout.attempts + 1,
                    first_sent_at=func.coalesce(Payout.first_sent_at, now)),
            execution_options={"synchronize_session": False})
    with session_scope() as session:
        return list(session.exec(select(Payout.id).where(Payout.claim_token == token).order_by(Payout.id)).all())


def instruction_for(session: Session, payout: Payout, partner: Partner | None = None) -> PayoutInstruction:
    partner = partner or session.get(Partner, payout.partner_id)
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
                             currency_exponent=exponent(payout.currency), payer_name=company,
                             on_accepted=partial(_record_ref, payout.id))


def _record_ref(payout_id: int, provider_ref: str) -> None:
    """The provider's reference, kept the moment it answers: a crash before the outcome is recorded leaves
    a payout that is looked up by it (PayPal has no lookup by our key)."""
    _set(payout_id, provider_ref=provider_ref)


def _pay_chunk(ids: list[int], rail: PayoutRail) -> list[Outcome]:
    """Call the rail for each claimed payout, then record the answers.

    A crash between a call and the record leaves the payout `sending` with its key: the next run
    asks the provider (lookup) before paying, so recording per chunk is as safe as per payout.
    """
    with session_scope() as session:
        payouts = session.exec(select(Payout).where(Payout.id.in_(ids)).order_by(Payout.id)).all()
        partners = {p.id: p for p in session.exec(select(Partner).where(
            Partner.id.in_({p.partner_id for p in payouts}))).all()}  # one query for the chunk, not one per payout
        work = [Work(p.id, p.attempts > 1, p.provider_ref, p.first_sent_at, p.error,
                     instruction_for(session, p, partners.get(p.partner_id))) for p in payouts]
    kill_point("payouts.after_claim")
    paid: list[tuple[int, str]] = []
    outcomes: list[Outcome] = []
    permits = limits.Permits(limits.PAYOUT, rail.name, len(work))  # the rail's rate, shared by every worker
    try:
        answered = {}
        if rail.pays_in_batches:  # every payout of the chunk, fresh or recovering: one file, checked in our record
            answered = {pid: _answer(r) for pid, r in
                        pay_in_files(rail, [(w.payout_id, w.instruction) for w in work]).items()}
        for w in work:
            answer = answered.get(w.payout_id) or _call(rail, w, permits)
            outcomes.append(answer.outcome)
            _record(w.payout_id, answer, rail, paid)
        kill_point("payouts.before_record")
    finally:
        if paid:
            record_paid(paid, actor=rail.name)
            kill_point("payouts.after_record")
    return outcomes


def _record(payout_id: int, answer: Answer, rail: PayoutRail, paid: list[tuple[int, str]]) -> None:
    if answer.outcome == Outcome.PAID:
        paid.append((payout_id, answer.detail))
    elif answer.outcome == Outcome.PROCESSING:
        _set(payout_id, status=PayoutStatus.PROCESSING, provider_ref=answer.detail, error=None)
    elif answer.outcome == Outcome.RETRY:
        _set(payout_id, status=PayoutStatus.PENDING, error=answer.detail, claimed_at=None)
    elif answer.outcome == Outcome.AMBIGUOUS:  # maybe accepted: stays claimed, recovered through lookup() next run
        _set(payout_id, error=answer.detail, claimed_at=None)
    elif answer.outcome == Outcome.NEEDS_REVIEW:
        mark_payout_needs_review(payout_id, answer.detail, answer.evidence, actor=rail.name)
    elif answer.outcome == Outcome.FAILED:
        mark_payout_failed(payout_id, answer.detail, actor=rail.name)


def _answer(result: RailResult | ProviderError) -> Answer:
    """What to do with one answer of the rail."""
    if isinstance(result, NeedsReview):
        return Answer(Outcome.NEEDS_REVIEW, result.reason, result.evidence)
    if isinstance(result, AmbiguousError):
        return Answer(Outcome.AMBIGUOUS, result.reason)
    if isinstance(result, RetryableError):
        return Answer(Outcome.RETRY, result.reason)
    if isinstance(result, ProviderError):
        return Answer(Outcome.FAILED, result.reason)
    return Answer(Outcome(result.status), result.provider_ref)


def _past_resend_window(rail: PayoutRail, first_sent_at: datetime | None) -> bool:
    return rail.resend_window is not None and first_sent_at is not None \
        and utcnow() - first_sent_at > rail.resend_window


def _call(rail: PayoutRail, w: Work, permits: limits.Permits) -> Answer:
    kill_point("payouts.before_call")
    instruction = w.instruction
    try:
        permits.take(2 if w.recovering else 1)  # a recovery may look up, then pay; no permit in time: RETRY
        # Recovering: we may have paid before a crash, so the provider is asked first.
        result = rail.lookup(instruction.idempotency_key, w.provider_ref) if w.recovering else None
        if result is not None and (problem := rail.mismatch(instruction, result)):
            return Answer(Outcome.NEEDS_REVIEW, problem, {"provider_ref": result.provider_ref, **result.held,
                                                          "asked_amount_minor": instruction.amount_minor,
                                                          "asked_currency": instruction.currency})
        if result is None and w.recovering and _past_resend_window(rail, w.first_sent_at):
            return Answer(Outcome.NEEDS_REVIEW, (
                f"{rail.name} never gave a clear answer for this payout, first sent more than "
                f"{rail.resend_window.days} days ago, longer than {rail.name} recognises a key sent again: "
                "sending it again could pay twice"),
                {"key": instruction.idempotency_key, "first_sent_at": w.first_sent_at.isoformat(),
                 "provider_ref": w.provider_ref or "none recorded", "last_error": w.error or "none recorded"})
        if result is None:
            result = rail.pay(instruction)
        kill_point("payouts.after_accept")
    except ProviderError as exc:
        return _answer(exc)
    return _answer(result)


def _set(payout_id: int, **values) -> None:
    """Record an answer on a payout this worker still holds (status `sending`)."""
    with session_scope() as session:
        session.execute(update(Payout).where(Payout.id == payout_id, Payout.status == PayoutStatus.SENDING)
                        .values(**values))
