"""Deployments: outreach (hourly due-step sender, manual load and enroll)."""

from __future__ import annotations


def deployments() -> list:
    """RunnerDeployments served by `partnerflow up`."""
    from prefect.deployments.runner import EntrypointType

    from partnerflow.flows.outreach import (
        enroll_prospects,
        load_sequences,
        send_due_outreach,
    )

    return [
        send_due_outreach.to_deployment(
            name="send-due-outreach",
            cron="5 * * * *",  # hourly; business hours are checked per recipient at send time
            description="Send due outreach sequence steps (suppression, stop rules, daily cap, business hours).",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        load_sequences.to_deployment(
            name="load-sequences",
            description="Load templates/outreach/sequences/*; a changed file becomes a new version.",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        enroll_prospects.to_deployment(
            name="enroll-prospects",
            description="Enroll prospects into a sequence (optionally by ids or a minimum score).",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]
