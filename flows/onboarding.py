"""Flows `onboard_partner` (on contract.signed) and `monitor_activation` (daily).

onboard_partner: partner active, tracking code + coupon, tax form / payout details requested
through the onboarding form link, welcome mail (once), checklist artifact.
monitor_activation: nudge quiet partners, mark long-quiet ones dormant, return them to active
when activity comes back; funnel artifact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from partnerflow.tasks.onboarding.activation import checklist_markdown
from partnerflow.tasks.onboarding.monitoring import check_activation, funnel, funnel_markdown
from partnerflow.tasks.onboarding.provisioning import provision


@flow(name="onboard-partner")
def onboard_partner(contract_id: int) -> dict[str, Any]:
    result = provision(contract_id)
    if "partner_id" in result:
        create_markdown_artifact(checklist_markdown(result["partner_id"]),
                                 key=f"onboarding-partner-{result['partner_id']}",
                                 description="Onboarding checklist")
    get_run_logger().info("Onboarding for contract %s: %s", contract_id, result)
    return result


@flow(name="monitor-activation")
def monitor_activation(now: datetime | None = None) -> dict[str, Any]:
    counts = check_activation(now)
    stages = funnel()
    create_markdown_artifact(funnel_markdown(stages), key="partner-funnel",
                             description="applied → approved → signed → active")
    get_run_logger().info("Activation: %s; funnel: %s", counts, stages)
    return {**counts, "funnel": stages}
