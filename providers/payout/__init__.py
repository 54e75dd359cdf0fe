"""Payout rails. `get_payout_rail(settings)` builds the one PARTNERFLOW_PAYOUT_RAIL names."""

from __future__ import annotations

from partnerflow.providers.errors import PermanentError
from partnerflow.providers.payout.base import PaymentMismatch, PayoutInstruction, PayoutRail, RailResult
from partnerflow.providers.payout.registry import RAILS
from partnerflow.providers.payout.settings import PayoutRailSettings


def get_payout_rail(settings: PayoutRailSettings, name: str | None = None) -> PayoutRail:
    """The configured rail, or `name` (the rail a stored payout was sent through)."""
    name = (name or settings.payout_rail).strip().lower()
    if name not in RAILS:
        raise PermanentError(f"unknown payout rail {name!r}; known: {', '.join(RAILS)}")
    return RAILS[name].load()(settings)


__all__ = ["PaymentMismatch", "PayoutInstruction", "PayoutRail", "PayoutRailSettings", "RailResult", "get_payout_rail"]
