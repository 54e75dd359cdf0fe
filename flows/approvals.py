"""Flow `expire_unanswered_approvals`: the safe default for every question nobody answered in time.

Prefect fails an expired suspended run without running any of our code, so this sweep reads our
own record of the questions (approval_request) and applies each stage's default: an application
expires and the team is mailed, a payout batch pays nothing, serious findings withhold payouts, proposed tier changes
and a broadcast are dropped.
A run that crashed while its question was unanswered shows no form, so the sweep schedules it
again to ask once more.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from partnerflow.tasks.compliance.review import apply_timeout_default
from partnerflow.tasks.contracting.decision import expire_review
from partnerflow.tasks.growth import tiers
from partnerflow.tasks.news import broadcasts
from partnerflow.tasks.payouts.approval import expire
from partnerflow.tasks.shared.approvals import TimeoutHandler, ask_again_after_crash, expire_overdue

SAFE_DEFAULTS: dict[str, TimeoutHandler] = {
    "application": expire_review,
    "payout_batch": expire,
    "partner_findings": apply_timeout_default,
    "tier_changes": tiers.expire,
    "broadcast": broadcasts.expire,
}


@flow(name="expire-unanswered-approvals")
def expire_unanswered_approvals() -> dict:
    expired = expire_overdue(SAFE_DEFAULTS)
    if expired:
        get_run_logger().warning("Nobody answered in time, safe default applied: %s", ", ".join(expired))
    asked_again = ask_again_after_crash()
    if asked_again:
        get_run_logger().warning("Runs that crashed while waiting for a person ask again: %s", ", ".join(asked_again))
    return {"expired": expired, "asked_again": asked_again}
