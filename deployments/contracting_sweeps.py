"""Deployments: signatures (reminder, expiry and withdrawal sweeps over open signature requests)."""

from __future__ import annotations


def deployments() -> list:
    """RunnerDeployments served by `partnerflow up`."""
    from prefect.deployments.runner import EntrypointType

    from partnerflow.flows.contracting_sweeps import signature_sweeps

    return [
        signature_sweeps.to_deployment(
            name="signature-sweeps",
            cron="17 * * * *",  # hourly; reminder and expiry thresholds are in days
            description="Remind unsigned signers, expire overdue requests, void withdrawn applications.",
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
    ]
