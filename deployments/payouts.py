"""Deployments: conversions, commissions and payouts (issue 5)."""

from __future__ import annotations


def deployments() -> list:
    """RunnerDeployments served by `partnerflow up`."""
    from prefect.deployments.runner import EntrypointType

    from partnerflow.flows.payouts import run_payout_batch
    from partnerflow.flows.payouts_commissions import (
        compute_commissions,
        dry_run_rules,
        import_conversions,
    )

    module = EntrypointType.MODULE_PATH
    return [
        run_payout_batch.to_deployment(
            name="payout-batch-monthly", cron="0 6 1 * *",  # 06:00 UTC on the 1st: pays what was payable by then
            description="Monthly payout batch: build, approve (above the limit), pay through the rail, remit.",
            entrypoint_type=module,
        ),
        run_payout_batch.to_deployment(
            name="payout-batch", description="Manual payout batch (optionally for a given period_end).",
            entrypoint_type=module,
        ),
        compute_commissions.to_deployment(
            name="compute-commissions-daily", cron="30 5 * * *",
            description="Compute commissions for new conversions, apply reversals, release locked commissions.",
            entrypoint_type=module,
        ),
        compute_commissions.to_deployment(name="compute-commissions", entrypoint_type=module,
                                          description="Compute commissions now."),
        import_conversions.to_deployment(name="import-conversions", entrypoint_type=module,
                                         description="Import a CSV of conversions (bad rows reported by line)."),
        dry_run_rules.to_deployment(name="dry-run-rules", entrypoint_type=module,
                                    description="Proposed commission rules vs computed, per partner; changes nothing."),
    ]
