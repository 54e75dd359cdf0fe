"""Reconciliation for the rails that confirm later: PayPal (status polling) and SEPA (the bank's report).

Stripe needs none of this: a transfer is final when created, and its webhooks cover reversals.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from partnerflow.tasks.payouts import reconcile as payout_rails


@task(name="poll-paypal-payouts", retries=2, retry_delay_seconds=60)
def _poll_paypal() -> dict[str, int]:
    return payout_rails.poll_paypal()


@task(name="import-sepa-bank-report")
def _import_bank_report(path: str) -> dict[str, int]:
    return payout_rails.import_bank_report(path)


@flow(name="reconcile-payout-rails")
def reconcile_payout_rails(bank_report: str | None = None) -> dict[str, Any]:
    """Poll PayPal for payouts still processing; apply a SEPA bank report (pain.002 / camt.053 / camt.054) if given."""
    result: dict[str, Any] = {"paypal": _poll_paypal()}
    if bank_report:
        result["sepa"] = _import_bank_report(bank_report)
    lines = ["# Payout reconciliation", ""]
    for rail, counts in result.items():
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to do"
        lines.append(f"- **{rail}**: {shown}")
    create_markdown_artifact("\n".join(lines), key="payout-reconciliation")
    return result
