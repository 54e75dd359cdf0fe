"""Recording a chunk of confirmed payouts at once: the set-based form of outcomes.mark_payouts_paid.

One compare-and-set UPDATE (open -> paid, each payout's own provider reference) returns the payouts it
changed; only those get their commissions marked paid and an audit row, all in one transaction. A payout
another path recorded first (a webhook, a second worker) is left as it is, exactly as mark_payouts_paid does.
"""

from __future__ import annotations

from sqlalchemy import case, insert, update

from partnerflow.models import Commission, Payout, session_scope, utcnow
from partnerflow.models.audit import AuditLog, current_flow_run_id
from partnerflow.models.payouts import OPEN_PAYOUT, CommissionStatus, PayoutStatus


def record_paid(confirmed: list[tuple[int, str]], actor: str) -> int:
    """Record (payout id, provider reference) pairs paid in one transaction; returns how many changed."""
    if not confirmed:
        return 0
    refs = dict(confirmed)
    now, flow_run_id = utcnow(), current_flow_run_id()
    p, c = Payout.__table__.c, Commission.__table__.c
    with session_scope() as session:
        changed = list(session.execute(
            update(Payout.__table__).where(p.id.in_(list(refs)), p.status.in_(OPEN_PAYOUT))
            .values(status=PayoutStatus.PAID, provider_ref=case(refs, value=p.id), paid_at=now, error=None)
            .returning(p.id)).scalars())
        if changed:
            session.execute(update(Commission.__table__).where(c.payout_id.in_(changed))
                            .values(status=CommissionStatus.PAID))
            session.execute(insert(AuditLog.__table__), [
                {"at": now, "actor": actor, "action": "payout.paid", "subject_type": "payout",
                 "subject_id": str(pid), "flow_run_id": flow_run_id, "details": {"provider_ref": refs[pid]}}
                for pid in changed])
    return len(changed)
