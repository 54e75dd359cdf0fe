"""Deployments: reconciliation of the PayPal and SEPA payout rails (issue 5, C2)."""

from __future__ import annotations


def deployments() -> list:
    """RunnerDeployments served by `partnerflow up`."""
    from prefect.deployments.runner import EntrypointType

    from partnerflow.flows.payouts_reconcile import reconcile_payout_rails

    module = EntrypointType.MODULE_PATH
    return [
        reconcile_payout_rails.to_deployment(
            name="reconcile-payout-rails-hourly", cron="15 * * * *",
            description="Poll PayPal for payouts still processing and mark them paid or failed.",
            entrypoint_type=module,
        ),
        reconcile_payout_rails.to_deployment(
            name="reconcile-payout-rails", entrypoint_type=module,
            description="Reconcile now; pass bank_report=<path> to apply a SEPA pain.002/camt.053/camt.054 file.",
        ),
    ]
