"""Growing the program: bonuses to partners and tier promotion."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from partnerflow.tasks.growth import steps


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
