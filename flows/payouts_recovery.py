"""Recovery sweep (hourly): resume every open payout batch by its id, whatever its period end.

Payouts a batch run left to retry or ambiguous, or a run that died, would otherwise stay attached
to an approved batch forever. The sweep pays them (looking each up first, so nothing is paid twice),
reconciles what is processing, remits the batches that finish, and mails the team about payouts
whose outcome stays unclear.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from partnerflow.tasks.payouts import batches, reports, steps
from partnerflow.tasks.shared.limits import one_payout_batch


@flow(name="recover-payout-batches")
def recover_payout_batches() -> dict[str, Any]:
    """Resume every approved batch with payouts still open; remit those that finish."""
    with one_payout_batch():
        result = steps.recover_batches()
    for resumed in result["resumed"]:
        if resumed["status"] in steps.FINISHED:
            resumed["remittances"] = steps.remit(resumed["batch_id"])
            steps.announce_paid(resumed["batch_id"], resumed["status"], batches.paid_count(resumed["batch_id"]))
    create_markdown_artifact(reports.recovery_report(result), key="payout-recovery")
    return result
