"""Payout rails: `get_payout_rail()` returns the one PARTNERFLOW_PAYOUT_RAIL names."""

from __future__ import annotations

import importlib

from partnerflow.settings import ConfigError, get_settings
from partnerflow.providers.payout.base import PayoutInstruction, PayoutRail, RailResult

_RAILS = {
    "ledger": ("partnerflow.providers.payout.ledger", "LedgerRail"),
    "sepa": ("partnerflow.providers.payout.sepa", "SepaRail"),
    "stripe": ("partnerflow.providers.payout.stripe", "StripeRail"),
    "paypal": ("partnerflow.providers.payout.paypal", "PayPalRail"),
}


def get_payout_rail(name: str | None = None) -> PayoutRail:
    name = (name or get_settings().payout_rail).strip().lower()
    if name not in _RAILS:
        raise ConfigError(f"PARTNERFLOW_PAYOUT_RAIL={name!r} is not a known choice; use one of: {', '.join(_RAILS)}.")
    module, cls = _RAILS[name]
    return getattr(importlib.import_module(module), cls)()


__all__ = ["PayoutInstruction", "PayoutRail", "RailResult", "get_payout_rail"]
