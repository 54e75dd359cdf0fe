"""Payout batch: build -> summary artifact -> approval (or policy) -> pay through the rail -> reconcile -> remit.

Each step is a task in tasks/payouts/steps.py over the whole batch, running a plain function that
the crash tests also run in a subprocess. Re-running the flow for the same period end continues
that batch: nothing is paid twice. One batch builds or pays at a time per installation (the shared
`payout-batch` limit, whichever deployment started the run); a run waiting for its approval holds
nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from partnerflow.models.payouts import PAYABLE_BATCH, PayoutBatchStatus
from partnerflow.tasks.payouts import approval, batches, steps
from partnerflow.tasks.shared.approvals import ask_person
from partnerflow.tasks.shared.limits import one_payout_batch


@flow(name="run-payout-batch", persist_result=True)
def run_payout_batch(period_end: str | None = None, auto_approve_below_minor: int | None = None) -> dict[str, Any]:
    """Build, approve, pay and remit one batch. Re-running it for the same period_end continues that batch."""
    with one_payout_batch():
        batch_id = steps.build(steps.parse_time(period_end) or steps.run_start_time())
    status, payouts, summary = steps.publish_batch(batch_id)

    if status == PayoutBatchStatus.DRAFT and not approval.approve_by_policy(batch_id, payouts,
                                                                            auto_approve_below_minor):
        answer = ask_person(approval.PayoutDecision, summary, key=f"payout-batch-{batch_id}",
                            subject=("payout_batch", batch_id), timeout_seconds=approval.approval_timeout_seconds())
        approval.record_answer(batch_id, answer)

    result: dict[str, Any] = {"batch_id": batch_id, "status": batches.batch_status(batch_id), "payouts": payouts}
    if result["status"] not in PAYABLE_BATCH:
        get_run_logger().info("Payout batch %s %s; nothing paid.", batch_id, result["status"])
        return result

    with one_payout_batch():
        result["executed"] = steps.pay(batch_id)
        result["reconciled"] = steps.reconcile_batch(batch_id)
    result["remittances"] = steps.remit(batch_id)
    result["status"], result["paid"] = batches.batch_status(batch_id), batches.paid_count(batch_id)
    if result["status"] in steps.FINISHED:
        steps.announce_paid(batch_id, result["status"], result["paid"])
    return result
