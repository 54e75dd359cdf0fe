"""Deployments: compliance (daily checks, one-partner runs, sanctions re-screening, finding reviews)."""

from __future__ import annotations


def deployments() -> list:
    """RunnerDeployments served by `partnerflow up`."""
    from prefect.deployments.runner import EntrypointType
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from partnerflow.flows.compliance import (
        check_compliance,
        rescreen_sanctions,
        review_findings,
    )
    from partnerflow.tasks.shared import events

    return [
        check_compliance.to_deployment(
            name="compliance-daily",
            cron="30 3 * * *",
            description="Disclosure, brand rules, sanctions and fraud checks over all active partners.",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        check_compliance.to_deployment(
            name="compliance-one-partner",
            description="Run every compliance check for one partner (set partner_id).",
            parameters={"partner_id": None},
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        rescreen_sanctions.to_deployment(
            name="sanctions-rescreen",
            cron="0 */6 * * *",  # cheap when the list did not change: partners already screened are skipped
            description="Re-screen every partner when the sanctions list changed (by checksum).",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        review_findings.to_deployment(
            name="compliance-review",
            description="A person decides on a partner's serious compliance findings.",
            triggers=[DeploymentEventTrigger(
                expect={events.COMPLIANCE_FINDING},
                match={"prefect.resource.id": "partnerflow.partner.*"},
                parameters={"partner_id": "{{ event.payload.partner_id }}"},
            )],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]
