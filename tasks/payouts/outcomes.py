"""What a provider said about a payout, recorded once: paid, failed, and the batch's status from them.

The executor, the webhooks, PayPal polling and SEPA bank reports all record through these
functions. Each is idempotent (a compare-and-set on the payout's status), so a confirmation that
arrives twice, or after another path recorded it, changes nothing.
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlmodel import select

from partnerflow.models import Commission, Partner, Payout, PayoutBatch, audit, session_scope, utcnow
from partnerflow.models.payouts import (
    OPEN_PAYOUT,
    PAYABLE_BATCH,
    CommissionStatus,
    PayoutBatchStatus,
    PayoutStatus,
)
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.mail import deliver
from partnerflow.tasks.shared.money import format_money


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
                update(Payout).where(Payout.id == payout_id, Payout.status.in_(OPEN_PAYOUT))
                .values(status=PayoutStatus.PAID, provider_ref=provider_ref, paid_at=now, error=None)
            )
            if result.rowcount != 1:
                continue
            changed += 1
            session.execute(update(Commission).where(Commission.payout_id == payout_id)
                            .values(status=CommissionStatus.PAID),
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
            update(Payout).where(Payout.id == payout_id, Payout.status.in_((*OPEN_PAYOUT, PayoutStatus.PAID)))
            .values(status=PayoutStatus.FAILED, error=reason)
        )
        changed = result.rowcount == 1
        if changed:
            session.execute(update(Commission).where(Commission.payout_id == payout_id)
                            .values(payout_id=None, status=CommissionStatus.PAYABLE),
                            execution_options={"synchronize_session": False})
            audit(session, actor=actor, action="payout.failed", subject_type="payout", subject_id=payout_id,
                  details={"reason": reason})
        payout = session.get(Payout, payout_id)
        partner = session.get(Partner, payout.partner_id) if payout else None
    if payout is not None and payout.status == PayoutStatus.FAILED:
        deliver(f"payout-failed:{payout_id}", kind="payout_failed", to_email=get_settings().team_email,
                template="payouts/payout_failed", context={
                    "payout_id": payout_id, "partner_name": partner.legal_name, "partner_id": partner.id,
                    "amount": format_money(payout.amount_minor, payout.currency), "reason": payout.error or reason,
                })
    return changed


def finish_batch(batch_id: int) -> str:
    """Set the batch's status from its payouts' statuses."""
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        statuses = dict(session.execute(
            select(Payout.status, func.count()).where(Payout.batch_id == batch_id).group_by(Payout.status)).all())
        still_open = sum(statuses.get(s, 0) for s in OPEN_PAYOUT)
        if batch.status in PAYABLE_BATCH:
            if still_open:
                batch.status = PayoutBatchStatus.APPROVED
            elif statuses.get(PayoutStatus.FAILED):
                batch.status = PayoutBatchStatus.PARTIALLY_PAID
            else:
                batch.status = PayoutBatchStatus.PAID
            session.add(batch)
        return batch.status
