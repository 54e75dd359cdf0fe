"""Deployments: contracting (on partner.applied), onboarding (on contract.signed), activation monitoring (daily)."""

from __future__ import annotations

from partnerflow.tasks.shared.events import CONTRACT_SIGNED, PARTNER_APPLIED


def deployments() -> list:
    """RunnerDeployments served by `partnerflow up`."""
    from prefect.deployments.runner import EntrypointType
    from prefect.events import DeploymentEventTrigger

    from partnerflow.flows.contracting import contract_application
    from partnerflow.flows.onboarding import monitor_activation, onboard_partner

    return [
        contract_application.to_deployment(
            name="contract-application",
            description="Screen, decide (policy or a person), generate the contract and send it for signature.",
            triggers=[DeploymentEventTrigger(
                name="on-partner-applied", expect={PARTNER_APPLIED}, match={"prefect.resource.id": "partnerflow.application.*"},
                parameters={"application_id": "{{ event.payload.application_id }}"})],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        onboard_partner.to_deployment(
            name="onboard-partner",
            description="Activate the partner, provision tracking link and coupon, request tax/payout details, welcome.",
            triggers=[DeploymentEventTrigger(
                name="on-contract-signed", expect={CONTRACT_SIGNED}, match={"prefect.resource.id": "partnerflow.contract.*"},
                parameters={"contract_id": "{{ event.payload.contract_id }}"})],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        monitor_activation.to_deployment(
            name="monitor-activation",
            cron="30 6 * * *",
            description="Nudge quiet partners, mark dormant ones, reactivate on activity; funnel artifact.",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]
