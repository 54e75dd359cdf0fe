"""The Prefect tasks of the payouts flows: each runs one plain function of this package.

The plain functions are what the CLI, the benchmarks and the crash tests (in a subprocess) call;
here they become task runs, one per step over a whole batch or import.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from partnerflow.models import utcnow
from partnerflow.models.payouts import PayoutBatchStatus
from partnerflow.tasks.payouts import (
    batches,
    commissions,
    conversions,
    execution,
    reconcile,
    recovery,
    remittance,
    reports,
)
from partnerflow.tasks.shared.events import PAYOUT_BATCH_PAID, emit

FINISHED = (PayoutBatchStatus.PAID, PayoutBatchStatus.PARTIALLY_PAID)


def parse_time(value: str | None) -> datetime | None:
    """A flow parameter's ISO date-time ("Z" or an offset; without one it is UTC); None stays None."""
    if not value:
        return None
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def run_start_time() -> datetime:
    """The default period end: when this run was scheduled to start, so a run resumed after its
    approval (executed again from the start) builds the same batch, not a new one."""
    return flow_run.scheduled_start_time or utcnow()


@task(name="build-payout-batch")
def build(period_end: datetime) -> int:
    return batches.build_batch(period_end)


@task(name="pay-payout-batch")
def pay(batch_id: int, passes: int = 3, wait_seconds: int = 30) -> dict[str, int]:
    """Each pass tries every open payout once; payouts told to retry (429, 5xx, timeouts) get another pass."""
    total: dict[str, int] = {}
    for n in range(passes):
        counts = execution.execute_batch(batch_id)
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
        if not (counts.get(execution.Outcome.RETRY) or counts.get(execution.Outcome.AMBIGUOUS)) or n == passes - 1:
            break
        time.sleep(wait_seconds)
    return total


@task(name="recover-open-payout-batches")
def recover_batches() -> dict[str, Any]:
    return recovery.recover_open_batches()


@task(name="reconcile-payout-batch")
def reconcile_batch(batch_id: int) -> dict[str, int]:
    return reconcile.reconcile_batch(batch_id)


@task(name="send-remittances", retries=3, retry_delay_seconds=60)
def remit(batch_id: int) -> int:
    return remittance.send_remittances(batch_id)


def publish_batch(batch_id: int) -> tuple[str, int, str]:
    """Put the batch's table in the UI; returns (status, number of payouts, its Markdown summary)."""
    batch, payouts = batches.batch_with_payouts(batch_id)
    summary = reports.batch_summary(batch, payouts)
    create_table_artifact(reports.batch_table(batch, payouts), key=f"payout-batch-{batch_id}", description=summary)
    return batch.status, len(payouts), summary


def announce_paid(batch_id: int, status: str, paid: int) -> None:
    """Hand the paid batch on as an event; never a reason to fail a paid batch."""
    try:
        emit(PAYOUT_BATCH_PAID, "payout_batch", batch_id, {"paid": paid, "status": status})
    except Exception:  # the event is a hand-off; the batch is paid either way
        get_run_logger().warning("could not emit %s for batch %s", PAYOUT_BATCH_PAID, batch_id)


@task(name="import-conversions-file")
def import_conversions_file(csv_path: str, source: str) -> dict[str, Any]:
    return conversions.import_csv(csv_path, source).as_dict()


@task(name="compute-commissions")
def compute_commissions() -> dict[str, Any]:
    return commissions.compute_commissions()


@task(name="poll-paypal-payouts", retries=2, retry_delay_seconds=60)
def poll_paypal() -> dict[str, int]:
    return reconcile.poll_paypal()


@task(name="import-sepa-bank-report")
def import_bank_report(path: str) -> dict[str, int]:
    return reconcile.import_bank_report(path)
