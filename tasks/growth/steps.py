"""The Prefect tasks of the growth flows: each runs one plain function of this package over all partners
(one task run per step, never one per partner)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import task

from partnerflow.models import utcnow
from partnerflow.models.audit import current_flow_run_id
from partnerflow.settings import get_settings
from partnerflow.tasks.growth import amendment, bonuses, tiers
from partnerflow.tasks.growth.bonuses import complete_months


@task(name="grant-due-bonuses", persist_result=True)
def grant_due_bonuses() -> dict[str, int]:
    """Signing bonuses of signed contracts and performance bonuses of the last complete months (keyed: once)."""
    return bonuses.grant_due_bonuses(months_back=get_settings().growth.growth_bonus_months_back)


@task(name="grant-bonus", persist_result=True)
def grant_bonus(partner_id: int, amount_minor: int, currency: str, reason: str, granted_by: str,
                key: str) -> dict[str, Any]:
    bonus_id, granted = bonuses.grant_bonus(partner_id=partner_id, amount_minor=amount_minor, currency=currency,
                                            reason=reason, granted_by=granted_by, key=key)
    return {"bonus_id": bonus_id, "granted": granted}


@task(name="propose-tier-changes", persist_result=True)
def propose_tier_changes(now: str | None = None) -> dict[str, Any]:
    """Evaluate the tier rules for the last complete month; store the proposals (keyed); the policy approves
    small ones. Returns the period and the ids waiting for a person."""
    at = parse_time(now) or utcnow()
    proposals = tiers.evaluate(at)
    waiting = tiers.propose(proposals, current_flow_run_id())
    return {"period": complete_months(at, 1)[0][0], "proposed": len(proposals), "waiting": waiting}


@task(name="describe-tier-changes", persist_result=True)
def describe_tier_changes(change_ids: list[int]) -> str:
    return tiers.describe(change_ids)


@task(name="record-tier-decision", persist_result=True)
def record_tier_decision(change_ids: list[int], answer: tiers.TierDecision | None) -> dict[str, list[int]]:
    return tiers.record_decision(change_ids, answer)


@task(name="carry-out-tier-changes", persist_result=True)
def carry_out_tier_changes(now: str | None = None) -> dict[str, Any]:
    """Amendments for approved changes, sent for signature; changes that are due applied."""
    at = parse_time(now) or utcnow()
    contracts = amendment.prepare_amendments(at)
    sent = amendment.send_amendments()
    applied = amendment.apply_due_changes(at)
    return {"amendments": contracts, "sent": sent, "applied": applied}


def parse_time(value: str | None) -> datetime | None:
    """A flow parameter's ISO date-time (UTC when it has no offset); None stays None."""
    if not value:
        return None
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)
