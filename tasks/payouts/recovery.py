"""The recovery sweep: every approved batch with payouts still open is resumed by its id.

A batch run that ran out of passes (payouts told to retry, or left ambiguous) or died leaves its
payouts attached to an approved batch: their commissions are in no later batch, and re-running the
batch flow needs its exact period end. The sweep needs neither: it picks up every open batch, pays
what can be paid (a payout left `sending` is looked up before anything is sent again), asks the rail
about payouts still processing, and mails the team about payouts whose answer stays unclear.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import select

from partnerflow.models import Payout, PayoutBatch, audit, session_scope, utcnow
from partnerflow.models.payouts import OPEN_PAYOUT, PayoutBatchStatus, PayoutStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts import execution, reconcile
from partnerflow.tasks.payouts.outcomes import finish_batch
from partnerflow.tasks.shared.mail import deliver
from partnerflow.tasks.shared.money import format_money

log = logging.getLogger(__name__)


def open_batches() -> list[int]:
    """Every approved batch that still has a payout not final (oldest first)."""
    with session_scope() as session:
        return list(session.exec(select(PayoutBatch.id).where(PayoutBatch.status == PayoutBatchStatus.APPROVED)
                                 .order_by(PayoutBatch.id)).all())


def resume_batch(batch_id: int) -> dict[str, Any]:
    """One pass over the batch, each payout on the rail it was recorded for, then a reconciliation of what
    is processing. A rail that fails stops neither the other rails' part nor the reconciliation."""
    failure: Exception | None = None
    try:
        executed = execution.execute_batch(batch_id)
    except Exception as exc:  # reconcile the other rails' payouts all the same; raised below
        executed, failure = {}, exc
    reconciled = reconcile.reconcile_batch(batch_id)
    if failure is not None:
        raise failure
    status = finish_batch(batch_id)
    with session_scope() as session:
        audit(session, actor="system", action="payout_batch.resumed", subject_type="payout_batch",
              subject_id=batch_id, details={"executed": executed, "reconciled": reconciled, "status": status})
    return {"batch_id": batch_id, "executed": executed, "reconciled": reconciled, "status": status}


def alert_unclear(older_than: timedelta | None = None) -> list[int]:
    """Mail the team once per payout sent longer ago than `older_than` whose outcome is still unknown
    (left `sending`: a timeout, a lost answer or a crash). Returns the payouts alerted about."""
    older_than = older_than or timedelta(hours=get_settings().payouts.payout_unclear_alert_hours)
    cutoff = utcnow() - older_than
    with session_scope() as session:
        stuck = session.exec(select(Payout).where(Payout.status == PayoutStatus.SENDING,
                                                  Payout.first_sent_at <= cutoff).order_by(Payout.id)).all()
        rows = [{"id": p.id, "batch_id": p.batch_id, "rail": p.rail, "partner_id": p.partner_id,
                 "amount": format_money(p.amount_minor, p.currency), "error": p.error or "no answer recorded",
                 "first_sent_at": p.first_sent_at.isoformat(timespec="minutes")} for p in stuck]
    hours = int(older_than.total_seconds() // 3600)
    for row in rows:  # key per payout: each is mailed about once, however often the sweep runs
        deliver(f"payout-unclear:{row['id']}", kind="payout_unclear", to_email=get_settings().team_email,
                template="payouts/payouts_stuck", context={"count": 1, "hours": hours, "payouts": [row]})
    return [row["id"] for row in rows]


def recover_open_batches() -> dict[str, Any]:
    """Resume every open batch; a batch that fails to resume does not stop the others."""
    resumed, errors = [], {}
    for batch_id in open_batches():
        try:
            resumed.append(resume_batch(batch_id))
        except Exception as exc:  # one rail being down must not keep the other batches waiting
            log.warning("payout batch %s could not be resumed: %s", batch_id, exc)
            errors[batch_id] = str(exc)
    return {"resumed": resumed, "errors": errors, "unclear": alert_unclear(),
            "still_open": _still_open()}


def _still_open() -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(Payout).where(Payout.status.in_(OPEN_PAYOUT))).one()
