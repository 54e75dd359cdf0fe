"""The Prefect tasks of the growth flows: each runs one plain function of this package over all partners
(one task run per step, never one per partner)."""

from __future__ import annotations

from typing import Any

from prefect import task

from partnerflow.settings import get_settings
from partnerflow.tasks.growth import bonuses


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
