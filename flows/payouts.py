"""Payout batch: build -> summary artifact -> approval (or policy) -> pay through the rail -> reconcile -> remit.

Every step is a plain function in tasks/payouts.py (also run by the fault-injection test in a
subprocess); here they are Prefect tasks, one per step over the whole batch.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.input import RunInput
from sqlmodel import select

from partnerflow.models import Payout, PayoutBatch, session_scope, utcnow
from partnerflow.settings import get_settings
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.shared.approvals import ask_person
from partnerflow.tasks.shared.money import format_money


class PayoutDecision(RunInput):
    """The approval form: approve all (except the held partners), or reject."""

    approve_all: bool = False
    hold_partner_ids: list[int] = []
    reject: bool = False
    note: str = ""
    approver: str = ""


def _period_end(value: str | None) -> datetime:
    if not value:
        return utcnow()
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@task(name="build-payout-batch")
def build(period_end: datetime) -> int:
    return engine.build_batch(period_end)


@task(name="pay-payout-batch")
def execute(batch_id: int, passes: int = 3, wait_seconds: int = 30) -> dict[str, int]:
    """Each pass tries every open payout once; payouts told to retry (429, 5xx, timeouts) get another pass."""
    total: dict[str, int] = {}
    for n in range(passes):
        counts = engine.execute_batch(batch_id)
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
        if not (counts.get("retry") or counts.get("ambiguous")) or n == passes - 1:
            break
        time.sleep(wait_seconds)
    return total


@task(name="reconcile-payout-batch")
def reconcile(batch_id: int) -> dict[str, int]:
    return engine.reconcile_batch(batch_id)


@task(name="send-remittances", retries=3, retry_delay_seconds=60)
def remit(batch_id: int) -> int:
    return engine.send_remittances(batch_id)


def summary_markdown(batch: PayoutBatch, payouts: list[Payout]) -> str:
    s = batch.summary
    totals = ", ".join(format_money(v, k) for k, v in sorted(s.get("totals", {}).items())) or "nothing"
    lines = [f"# Payout batch {batch.id} (period end {s.get('period_end', '')[:10]})", "",
             f"**{len(payouts)} payouts, total {totals}** through the `{s.get('rail')}` rail.", ""]
    if s.get("held"):
        lines += ["Held (not in this batch):", ""]
        lines += [f"- partner {h['partner_id']} {h['partner']}: {format_money(h['amount_minor'], h['currency'])} "
                  f"— {', '.join(h['held'])}" for h in s["held"][:50]]
        lines.append("")
    if s.get("below_threshold"):
        lines.append(f"{s['below_threshold']} partners are below their payout threshold.")
    lines += ["", "Approve all, or list partner ids to hold; reject stops the batch (balances stay)."]
    return "\n".join(lines)


@flow(name="run-payout-batch")
def run_payout_batch(period_end: str | None = None, auto_approve_below_minor: int | None = None) -> dict[str, Any]:
    """Build, approve, pay and remit one batch. Re-running it for the same period_end continues that batch."""
    logger = get_run_logger()
    settings = get_settings()
    batch_id = build(_period_end(period_end))
    with session_scope() as session:
        batch = session.get(PayoutBatch, batch_id)
        payouts = session.exec(select(Payout).where(Payout.batch_id == batch_id).order_by(Payout.partner_id)).all()
    table = [{"partner_id": p.partner_id, "amount": format_money(p.amount_minor, p.currency), "status": p.status,
              "fx_rates": ", ".join(f"{k} {v}" for k, v in p.fx_rates.items())} for p in payouts[:1000]]
    table += [{"partner_id": h["partner_id"], "amount": format_money(h["amount_minor"], h["currency"]),
               "status": "held: " + ", ".join(h["held"]), "fx_rates": ""} for h in batch.summary.get("held", [])]
    create_table_artifact(table, key=f"payout-batch-{batch_id}", description=summary_markdown(batch, payouts))

    if batch.status == "draft":
        totals = engine.total_minor_by_currency(batch_id)
        biggest = max(totals.values(), default=0)
        needs_person = biggest > settings.payouts.payout_approval_above_minor
        if auto_approve_below_minor is not None and biggest < auto_approve_below_minor:
            needs_person = False
        if not payouts:
            engine.decide_batch(batch_id, approve=True, actor="policy", note="nothing to pay")
        elif not needs_person:
            engine.decide_batch(batch_id, approve=True, actor="policy",
                                note=f"largest total {biggest} minor units is within the auto-approval limit")
        else:
            answer = ask_person(PayoutDecision, summary_markdown(batch, payouts),
                                timeout_seconds=settings.payouts.payout_approval_timeout_seconds,
                                key=f"payout-batch-{batch_id}")
            if answer is None:
                engine.decide_batch(batch_id, approve=False, actor="policy", status_if_rejected="expired",
                                    note="nobody answered in time; nothing paid")
            elif answer.reject or not (answer.approve_all or answer.hold_partner_ids):
                engine.decide_batch(batch_id, approve=False, actor=answer.approver, note=answer.note)
            else:
                engine.decide_batch(batch_id, approve=True, actor=answer.approver, note=answer.note,
                                    hold_partner_ids=answer.hold_partner_ids)
    with session_scope() as session:
        status = session.get(PayoutBatch, batch_id).status
    result: dict[str, Any] = {"batch_id": batch_id, "status": status, "payouts": len(payouts)}
    if status not in ("approved", "paid", "partially_paid"):
        logger.info("Payout batch %s %s; nothing paid.", batch_id, status)
        return result
    result["executed"] = execute(batch_id)
    result["reconciled"] = reconcile(batch_id)
    result["remittances"] = remit(batch_id)
    with session_scope() as session:
        result["status"] = session.get(PayoutBatch, batch_id).status
        paid = session.exec(select(Payout).where(Payout.batch_id == batch_id, Payout.status == "paid")).all()
    result["paid"] = len(paid)
    if result["status"] in ("paid", "partially_paid"):
        from partnerflow.tasks.shared.events import PAYOUT_BATCH_PAID, emit

        try:
            emit(PAYOUT_BATCH_PAID, "payout_batch", batch_id, {"paid": len(paid), "status": result["status"]})
        except Exception:  # events are a hand-off, never a reason to fail a paid batch
            logger.warning("could not emit %s for batch %s", PAYOUT_BATCH_PAID, batch_id)
    return result
