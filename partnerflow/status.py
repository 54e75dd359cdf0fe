"""What `partnerflow status` reports, read straight from the system of record."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from partnerflow.models import (
    Application,
    Contract,
    ContractStatus,
    Message,
    MessageStatus,
    Partner,
    Payout,
    Prospect,
    Stage,
    session_scope,
)
from partnerflow.models.approvals import ApprovalRequest, ApprovalStatus
from partnerflow.models.payouts import PayoutStatus


def collect_status() -> dict:
    with session_scope() as session:
        by_stage = dict(session.exec(select(Partner.stage, func.count()).group_by(Partner.stage)).all())

        def count(model, *where) -> int:
            return session.exec(select(func.count()).select_from(model).where(*where)).one()

        waiting = session.exec(select(ApprovalRequest).where(ApprovalRequest.status == ApprovalStatus.WAITING)
                               .order_by(ApprovalRequest.asked_at)).all()
        return {
            "approvals_waiting": [{"key": row.key, "subject": f"{row.subject_type} {row.subject_id}",
                                   "asked_at": row.asked_at.isoformat(), "expires_at": row.expires_at.isoformat()}
                                  for row in waiting],
            "partners_by_stage": {stage.value: by_stage.get(stage, 0) for stage in Stage},
            "prospects": count(Prospect),
            "applications": count(Application),
            "messages_sent": count(Message, Message.status == MessageStatus.SENT),
            "contracts_signed": count(Contract, Contract.status == ContractStatus.SIGNED),
            "payouts_paid": count(Payout, Payout.status == PayoutStatus.PAID),
            "payouts_needing_review": count(Payout, Payout.status == PayoutStatus.NEEDS_REVIEW),
        }
