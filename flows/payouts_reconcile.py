"""Reconciliation for the rails that confirm later: PayPal (status polling) and SEPA (the bank's report).

Stripe needs none of this: a transfer is final when created, and its webhooks cover reversals.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from partnerflow.tasks.payouts import reports, steps


@flow(name="reconcile-payout-rails")
def reconcile_payout_rails(bank_report: str | None = None) -> dict[str, Any]:
    """Poll PayPal for payouts still processing; apply a SEPA bank report (pain.002 / camt.053 / camt.054) if given."""
    result: dict[str, Any] = {"paypal": steps.poll_paypal()}
    if bank_report:
        result["sepa"] = steps.import_bank_report(bank_report)
    create_markdown_artifact(reports.reconciliation_report(result), key="payout-reconciliation")
    return result
