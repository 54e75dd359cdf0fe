"""The payout rail the settings choose, built from the payout settings (the one place rails are built)."""

from __future__ import annotations

from partnerflow.providers.payout import PayoutRail, get_payout_rail
from partnerflow.providers.payout.settings import PayoutRailSettings
from partnerflow.settings import get_settings


def rail_settings() -> PayoutRailSettings:
    """The payout settings; the ledger rail keeps its record in our own database unless told otherwise."""
    settings = get_settings()
    payouts = settings.payouts
    if payouts.ledger_database_url:
        return payouts
    return payouts.model_copy(update={"ledger_database_url": settings.resolved_database_url})


def payout_rail(name: str | None = None) -> PayoutRail:
    """The configured rail, or `name` (the rail stored payouts were sent through)."""
    return get_payout_rail(rail_settings(), name)
