"""The payout rail the settings choose (the one place rails are built)."""

from __future__ import annotations

from partnerflow.providers.payout import PayoutRail, get_payout_rail
from partnerflow.settings import get_settings


def payout_rail(name: str | None = None) -> PayoutRail:
    """The configured rail, or `name` (the rail stored payouts were sent through)."""
    return get_payout_rail(get_settings().payouts, name)
