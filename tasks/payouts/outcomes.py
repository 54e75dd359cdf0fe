"""What a provider said about a payout, recorded once: paid, failed, and the batch's status from them.

The executor, the webhooks, PayPal polling and SEPA bank reports all record through these
functions. Each is idempotent (a compare-and-set on the payout's status), so a confirmation that
arrives twice, or after another path recorded it, changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from sqlmodel import select

from partnerflow.models import Commission, Partner, Payout, PayoutBatch, audit, session_scope, utcnow
from partnerflow.models.payouts import (
    OPEN_PAYOUT,
    PAYABLE_BATCH,
    UNSETTLED_PAYOUT,
    CommissionStatus,
    PayoutBatchStatus,
    PayoutStatus,
)
from partnerflow.secrets import mask
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
        _tell_team("payout_failed", payout, partner, reason)
    return changed


def mark_payout_needs_review(payout_id: int, reason: str, evidence: dict[str, Any] | None, actor: str) -> bool:
    """The money may have moved, but not as we asked (or it can no longer be asked safely): a person decides.

    The commissions stay attached to the payout, so no later batch pays them; nothing is sent again.
    Idempotent: True only the first time; the team mail is sent once (key payout-review:{id}).
    """
    evidence = {k: _shown(k, v) for k, v in (evidence or {}).items()}
    with session_scope() as session:
        result = session.execute(
            update(Payout).where(Payout.id == payout_id, Payout.status.in_(OPEN_PAYOUT))
            .values(status=PayoutStatus.NEEDS_REVIEW, error=reason, claimed_at=None)
        )
        changed = result.rowcount == 1
        if changed:
            audit(session, actor=actor, action="payout.needs_review", subject_type="payout", subject_id=payout_id,
                  details={"reason": reason, "evidence": evidence})
        payout = session.get(Payout, payout_id)
        partner = session.get(Partner, payout.partner_id) if payout else None
    if payout is not None and payout.status == PayoutStatus.NEEDS_REVIEW:
        _tell_team("payout_review", payout, partner, reason, template="payouts/payout_needs_review",
                   evidence=evidence)
    return changed


def _tell_team(kind: str, payout: Payout, partner: Partner, reason: str, template: str | None = None,
               **extra: Any) -> None:
    """One team mail per payout and kind (key `<kind with - for _>:<payout id>`)."""
    deliver(f"{kind.replace('_', '-')}:{payout.id}", kind=kind, to_email=get_settings().team_email,
            template=template or f"payouts/{kind}", context={
                "payout_id": payout.id, "partner_name": partner.legal_name, "partner_id": partner.id,
                "amount": format_money(payout.amount_minor, payout.currency), "reason": payout.error or reason,
                **extra})


# Payout details are encrypted at rest: evidence that names them (kept in the audit log, mailed) shows them masked.
_DETAILS = ("destination", "receiver", "iban", "email", "account")


def _shown(name: str, value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_shown(k, v)}" for k, v in value.items())
    if any(d in name.lower() for d in _DETAILS):
        return mask(str(value))
    return str(value)


def resolve_payout(payout_id: int, *, paid: bool, actor: str, note: str = "") -> Payout:
    """A person's answer for a payout that needs review: the money reached the partner (paid: its
    commissions are paid) or it did not (failed: they go back to the balance). Audited; only from
    needs-review. Raises ValueError with a sentence otherwise."""
    if not actor.strip():
        raise ValueError("say who decides (--by NAME)")
    with session_scope() as session:
        payout = session.get(Payout, payout_id)
        if payout is None:
            raise ValueError(f"there is no payout {payout_id}")
        if payout.status != PayoutStatus.NEEDS_REVIEW:
            raise ValueError(f"payout {payout_id} is {payout.status}, not waiting for review; nothing changed")
        status = PayoutStatus.PAID if paid else PayoutStatus.FAILED
        review_reason = payout.error
        result = session.execute(
            update(Payout).where(Payout.id == payout_id, Payout.status == PayoutStatus.NEEDS_REVIEW)
            .values(status=status, paid_at=utcnow() if paid else None,
                    error=None if paid else f"resolved as failed by {actor}" + (f": {note}" if note else "")))
        if result.rowcount != 1:
            raise ValueError(f"payout {payout_id} was resolved by someone else meanwhile; nothing changed")
        commissions = update(Commission).where(Commission.payout_id == payout_id)
        session.execute(commissions.values(status=CommissionStatus.PAID) if paid
                        else commissions.values(payout_id=None, status=CommissionStatus.PAYABLE),
                        execution_options={"synchronize_session": False})
        audit(session, actor=actor, action="payout.resolved", subject_type="payout", subject_id=payout_id,
              details={"as": status.value, "note": note, "review_reason": review_reason})
        batch_id = payout.batch_id
    finish_batch(batch_id)
    with session_scope() as session:
        payout = session.get(Payout, payout_id)
        session.expunge(payout)
        return payout


def finish_batch(batch_id: int) -> str:
    """Set the batch's status from its payouts' statuses (open while any payout waits for a person)."""
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        statuses = dict(session.execute(
            select(Payout.status, func.count()).where(Payout.batch_id == batch_id).group_by(Payout.status)).all())
        still_open = sum(statuses.get(s, 0) for s in UNSETTLED_PAYOUT)
        if batch.status in PAYABLE_BATCH:
            if still_open:
                batch.status = PayoutBatchStatus.APPROVED
            elif statuses.get(PayoutStatus.FAILED):
                batch.status = PayoutBatchStatus.PARTIALLY_PAID
            else:
                batch.status = PayoutBatchStatus.PAID
            session.add(batch)
        return batch.status
