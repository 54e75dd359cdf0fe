"""Growing the program: bonuses to partners and tier promotion."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from partnerflow.settings import get_settings
from partnerflow.tasks.growth import steps
from partnerflow.tasks.growth.tiers import TierDecision
from partnerflow.tasks.shared.approvals import ask_person


@flow(name="grant-bonuses", persist_result=True)
def grant_bonuses() -> dict[str, int]:
    """Grant the signing bonuses of signed contracts and the performance bonuses the bonus rules earned; each
    becomes a commission line with its reason, paid with the commissions after the lock period."""
    granted = steps.grant_due_bonuses()
    get_run_logger().info("bonuses granted: %s", granted)
    return granted


@flow(name="grant-bonus", persist_result=True)
def grant_bonus(partner_id: int, amount_minor: int, currency: str, reason: str, granted_by: str,
                key: str) -> dict[str, Any]:
    """Grant one partner a one-off bonus (a contest prize, goodwill): amount in minor units (5000 = 50.00),
    the reason the partner sees, your name, and a key (e.g. contest-2026-spring) so that it is granted once."""
    return steps.grant_bonus(partner_id, amount_minor, currency, reason, granted_by, key)


@flow(name="review-tiers", persist_result=True)
def review_tiers(now: str | None = None) -> dict[str, Any]:
    """Evaluate the tier rules for the last complete month and ask a person about the proposed changes (the
    evidence in the form); approved changes get an amendment sent for signature; promotions apply from the
    signature, demotions at the end of the notice period. Runs as a deployment (it may wait for a person)."""
    proposal = steps.propose_tier_changes(now)
    waiting: list[int] = proposal["waiting"]
    decided: dict[str, list[int]] = {}
    if waiting:
        answer = ask_person(TierDecision, steps.describe_tier_changes(waiting),
                            key=f"tier-changes-{proposal['period']}-{waiting[0]}",
                            subject=("tier_changes", ",".join(str(i) for i in waiting)),
                            timeout_seconds=get_settings().growth.growth_tier_approval_timeout_seconds)
        decided = steps.record_tier_decision(waiting, answer)
    carried = steps.carry_out_tier_changes(now)
    get_run_logger().info("tier changes: %s proposed, decided %s, %s", proposal["proposed"], decided, carried)
    return {**proposal, "decided": decided, **carried}


@flow(name="apply-tier-changes", persist_result=True)
def apply_tier_changes(now: str | None = None, contract_id: int | None = None) -> dict[str, Any]:
    """Send amendments of approved changes; apply signed promotions and demotions whose notice is over.
    `contract_id`: the signed contract whose event started this run (every due change is applied anyway)."""
    return steps.carry_out_tier_changes(now)
